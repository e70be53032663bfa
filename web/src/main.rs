//! The page's entry point (Trunk builds it to wasm32).

fn main() {
    #[cfg(target_arch = "wasm32")]
    pmedit_web::ui::start();
}
