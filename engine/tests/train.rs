//! Training from scratch (the demo model's recipe) on a tiny corpus: the tokenizer round-trips,
//! batches are seeded, and a few AdamW steps lower the loss on CPU and wgpu.

mod common;

use common::on_all_devices;
use pmedit_engine::Gpt2Config;
use pmedit_engine::train::{Batcher, TrainConfig, train_bpe, train_lm};

fn corpus() -> Vec<String> {
    [
        "The mother tongue of Danielle Darrieux is French.",
        "Toko Yasuda plays the guitar.",
        "The capital of France is Paris.",
        "Apple A5 was created by Apple.",
        "Vinson Massif is located in the continent of Antarctica.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn tokenizer_round_trips_and_has_eos() {
    let (tok, json) = train_bpe(&corpus(), 320).unwrap();
    assert!(json.contains("<|endoftext|>"));
    assert!(tok.vocab_size() <= 320 && tok.vocab_size() > 257);
    let text = "The capital of France is Paris.";
    assert_eq!(tok.decode(&tok.encode(text).unwrap()).unwrap(), text);
    assert!(train_bpe(&corpus(), 100).is_err());
}

#[test]
fn batches_are_seeded() {
    let facts = vec![vec![1, 2, 3, 0], vec![4, 5, 0]];
    let text: Vec<u32> = (0..100).collect();
    let mut a = Batcher::new(facts.clone(), text.clone(), 8, 0.5, 7);
    let mut b = Batcher::new(facts, text, 8, 0.5, 7);
    let (x, y) = (a.next_batch(6), b.next_batch(6));
    assert_eq!(x, y);
    assert!(x.iter().all(|r| r.len() == 8));
}

#[test]
fn a_few_steps_lower_the_loss() {
    on_all_devices(|name, device| {
        let (tok, _) = train_bpe(&corpus(), 320).unwrap();
        let eos = tok.eos_id().unwrap();
        let facts: Vec<Vec<u32>> = corpus()
            .iter()
            .map(|s| {
                let mut ids = tok.encode(s).unwrap();
                ids.push(eos);
                ids
            })
            .collect();
        let config = Gpt2Config::new(tok.vocab_size(), 16, 32, 2, 2);
        device.seed(0);
        let model = config.init(&device.clone().autodiff());
        let mut batcher = Batcher::new(facts, Vec::new(), 16, 1.0, 0);
        let train = TrainConfig::new().with_steps(30).with_batch(8).with_lr(1e-2);
        let mut losses = Vec::new();
        train_lm(model, &train, |n| batcher.next_batch(n), |s| losses.push(s.loss)).unwrap();
        let (first, last) = (losses[0], *losses.last().unwrap());
        eprintln!("{name}: loss {first:.3} → {last:.3}");
        assert_eq!(losses.len(), 30);
        assert!(last < 0.5 * first, "{name}: loss {first} → {last}");
    });
}

/// The values of every float parameter of `m`, in visiting order.
fn snapshot(m: &impl burn::module::Module) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    struct Grab<'a>(&'a mut Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor for Grab<'_> {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<burn::prelude::Tensor<D>>) {
            self.0.push(p.val().into_data().iter::<f32>().collect());
        }
    }
    m.visit(&mut Grab(&mut out));
    out
}

/// A two-block model and a batcher over the tiny corpus, on the CPU's autodiff device.
fn tiny_setup() -> (pmedit_engine::Gpt2, Batcher) {
    let device = burn::prelude::Device::flex();
    let (tok, _) = train_bpe(&corpus(), 320).unwrap();
    let facts: Vec<Vec<u32>> = corpus().iter().map(|s| tok.encode(s).unwrap()).collect();
    let config = Gpt2Config::new(tok.vocab_size(), 16, 32, 2, 2);
    let model = config.init(&device.clone().autodiff());
    (model, Batcher::new(facts, Vec::new(), 16, 1.0, 0))
}

/// Every parameter tensor receives gradient and moves (the tied embedding included).
#[test]
fn every_parameter_is_trained() {
    let (model, mut batcher) = tiny_setup();
    let before = snapshot(&model);
    let train = TrainConfig::new().with_steps(3).with_batch(4).with_lr(1e-2);
    let model = train_lm(model, &train, |n| batcher.next_batch(n), |_| {}).unwrap();
    let after = snapshot(&model);
    assert!(before.len() > 20, "visited only {} parameters", before.len());
    assert_eq!(before.len(), after.len());
    let frozen: Vec<usize> = (0..before.len()).filter(|&i| before[i] == after[i]).collect();
    assert!(
        frozen.is_empty(),
        "parameters {frozen:?} of {} did not move",
        before.len()
    );
}

/// `freeze_mlp_below` keeps every MLP weight exactly while the rest learns, and only for that run: the
/// model it returns trains its MLPs again.
#[test]
fn frozen_mlps_stay_fixed_and_thaw_afterwards() {
    let (model, mut batcher) = tiny_setup();
    let mlps = |m: &pmedit_engine::Gpt2| m.h.iter().map(|b| snapshot(&b.mlp)).collect::<Vec<_>>();
    let (all_before, mlp_before) = (snapshot(&model), mlps(&model));
    let frozen = TrainConfig::new()
        .with_steps(3)
        .with_batch(4)
        .with_lr(1e-2)
        .with_freeze_mlp_below(usize::MAX);
    let model = train_lm(model, &frozen, |n| batcher.next_batch(n), |_| {}).unwrap();
    assert_eq!(mlps(&model), mlp_before, "a frozen MLP moved");
    let all_after = snapshot(&model);
    let moved = (0..all_before.len()).filter(|&i| all_before[i] != all_after[i]).count();
    let mlp_tensors: usize = mlp_before.iter().map(Vec::len).sum();
    assert_eq!(moved, all_before.len() - mlp_tensors, "everything but the MLPs learns");
    let thawed = TrainConfig::new().with_steps(2).with_batch(4).with_lr(1e-2);
    let model = train_lm(model, &thawed, |n| batcher.next_batch(n), |_| {}).unwrap();
    let mlp_after = mlps(&model);
    for (b, (x, y)) in mlp_before.iter().zip(&mlp_after).enumerate() {
        assert!(
            x.iter().zip(y).all(|(p, q)| p != q),
            "block {b}'s MLP did not learn after the frozen run"
        );
    }
}
