//! The engine worker's entry point (Trunk builds it to wasm32 as a Web Worker).

fn main() {
    pmedit_web::ctors::run();
    #[cfg(target_family = "wasm")]
    {
        use gloo_worker::Registrable;
        pmedit_web::channel::report_deaths();
        pmedit_web::worker::EngineWorker::registrar().register();
    }
}
