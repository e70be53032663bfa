//! The page's entry point (Trunk builds it to wasm32).

fn main() {
    pmedit_web::ctors::run();
    #[cfg(target_family = "wasm")]
    pmedit_web::ui::start();
}
