//! `pmedit apply-delta`: the original model plus the change an edit saved (`--save-delta`) gives
//! the edited model's weights bit for bit; a delta for another model, or a file that is not a
//! delta, is refused without output.

mod common;
use common::{copy_demo, pmedit};

#[test]
fn the_original_plus_the_saved_change_is_the_edited_model() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("demo");
    copy_demo(&model);
    let requests = tmp.path().join("requests.json");
    std::fs::write(
        &requests,
        r#"[{"prompt": "{} is a citizen of", "subject": "Danielle Darrieux", "target_new": "Italy"}]"#,
    )
    .unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (edited, delta, rebuilt) = (
        tmp.path().join("edited"),
        tmp.path().join("d.safetensors"),
        tmp.path().join("rebuilt"),
    );
    let (ok, _, err) = pmedit(&[
        "--device",
        "cpu",
        "edit",
        "--model",
        &s(&model),
        "--requests",
        &s(&requests),
        "--algo",
        "memit",
        "--templates",
        "none",
        "--steps",
        "5",
        "--out",
        &s(&edited),
        "--save-delta",
        &s(&delta),
    ]);
    assert!(ok, "{err}");
    // `pmedit apply-delta` of `delta` onto `model`, into `out`.
    let apply = |model: &std::path::Path, delta: &std::path::Path, out: &std::path::Path| {
        let (ok, _, err) = pmedit(&[
            "--device",
            "cpu",
            "apply-delta",
            "--model",
            &s(model),
            "--delta",
            &s(delta),
            "--out",
            &s(out),
        ]);
        (ok, err)
    };
    let (ok, err) = apply(&model, &delta, &rebuilt);
    assert!(ok, "{err}");
    let weights = |d: &std::path::Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(
        weights(&rebuilt) == weights(&edited),
        "the rebuilt weights differ from the edited ones"
    );
    assert!(weights(&rebuilt) != weights(&model));
    assert!(rebuilt.join("pmedit-edit.json").is_file());

    // Not a delta: the model's own weights. Refused, nothing written.
    let refused = tmp.path().join("refused");
    let (ok, err) = apply(&model, &model.join("model.safetensors"), &refused);
    assert!(!ok && err.contains("not a pmedit delta file"), "{err}");
    assert!(!refused.exists());

    // A delta of another model (tiny-gpt2: other sizes) is refused by shape.
    let tiny = common::fixture("tiny-gpt2");
    let (ok, err) = apply(&tiny, &delta, &refused);
    assert!(!ok && (err.contains("another model") || err.contains("layer")), "{err}");
    assert!(!refused.exists());
}
