//! pmedit in the browser. The page (Leptos, client-side rendered) talks to a Web Worker that owns
//! the engine, so long edits never freeze the page. What is plain Rust — the messages, form
//! validation, chart scales — builds and is tested natively too.

pub mod budget;
pub mod ctors;
pub mod failure;
pub mod form;
pub mod protocol;
pub mod range;
pub mod scale;
pub mod share;

#[cfg(target_family = "wasm")]
pub mod channel;
#[cfg(target_family = "wasm")]
pub mod opfs;
#[cfg(target_family = "wasm")]
pub mod ui;
#[cfg(target_family = "wasm")]
pub mod worker;
