//! The side channels between the page and the engine worker, besides gloo-worker's request/response
//! messages: `BroadcastChannel`s named by the page in the worker's URL (`?channel=NAME`).
//!
//! - `NAME`: the worker's last words. A panic (a WebGPU out-of-memory or validation error becomes
//!   one inside burn's wgpu runtime) aborts the wasm instance, and a trap that is not a panic (an
//!   allocation failure) does too; either way the page would wait for an answer forever. Both are
//!   posted here, and the worker closes itself so its memory is freed.
//! - `NAME-progress`: `[done, total]` bytes of the weights while a model loads. Loading is
//!   synchronous inside the worker (tensor by tensor), so gloo's messages could only go out at the
//!   end; a broadcast is delivered to the page at once.

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

/// The progress channel's name for a worker channel `name`.
pub fn progress_name(name: &str) -> String {
    format!("{name}-progress")
}

/// In the worker: the channel name the page gave in the worker's URL.
pub fn worker_channel() -> Option<String> {
    let global: JsValue = js_sys::global().into();
    let search = Reflect::get(&global, &"location".into())
        .and_then(|l| Reflect::get(&l, &"search".into()))
        .ok()
        .and_then(|s| s.as_string())?;
    search
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix("channel="))
        .map(str::to_string)
}

/// In the worker: posts a panic, or any uncaught error or rejection, on the worker's channel and
/// closes the worker.
pub fn report_deaths() {
    console_error_panic_hook::set_once();
    let Some(channel) = worker_channel() else { return };
    let name = channel.clone();
    std::panic::set_hook(Box::new(move |info| {
        console_error_panic_hook::hook(info);
        let why = crate::failure::panic_message(&info.to_string());
        let msg = format!("The engine stopped on a GPU or internal error ({why})");
        let post = Function::new_with_args(
            "name, msg",
            "try { new BroadcastChannel(name).postMessage(msg); } catch (_) {} self.close();",
        );
        let _ = post.call2(&JsValue::NULL, &JsValue::from_str(&name), &JsValue::from_str(&msg));
    }));
    // Plain JS, so it still runs when the wasm instance is broken.
    let on_error = Function::new_with_args(
        "name, e",
        "const why = e && (e.message || (e.reason && (e.reason.message || e.reason))) || e; \
         try { new BroadcastChannel(name).postMessage('The engine stopped (' + why + ')'); } catch (_) {} \
         self.close();",
    )
    .bind1(&JsValue::NULL, &JsValue::from_str(&channel));
    let global: JsValue = js_sys::global().into();
    if let Ok(add) = Reflect::get(&global, &"addEventListener".into()).and_then(|f| f.dyn_into::<Function>()) {
        for event in ["error", "unhandledrejection"] {
            let _ = add.call2(&global, &event.into(), &on_error);
        }
    }
}

fn open(name: &str) -> Result<Object, String> {
    let err = |e: JsValue| format!("BroadcastChannel {name}: {e:?}");
    let class: Function = Reflect::get(&js_sys::global(), &"BroadcastChannel".into())
        .map_err(err)?
        .dyn_into()
        .map_err(err)?;
    Ok(Reflect::construct(&class, &js_sys::Array::of1(&name.into()))
        .map_err(err)?
        .unchecked_into())
}

fn close(channel: &Object) {
    if let Ok(close) = Reflect::get(channel, &"close".into()).and_then(|f| f.dyn_into::<Function>()) {
        let _ = close.call0(channel);
    }
}

/// Posts on a channel; closes it when dropped.
pub struct Poster(Object);

impl Poster {
    /// Opens channel `name`.
    pub fn new(name: &str) -> Result<Self, String> {
        open(name).map(Self)
    }

    /// Posts `message` (structured-cloned to every listener).
    pub fn post(&self, message: &JsValue) {
        if let Ok(post) = Reflect::get(&self.0, &"postMessage".into()).and_then(|f| f.dyn_into::<Function>()) {
            let _ = post.call1(&self.0, message);
        }
    }
}

impl Drop for Poster {
    fn drop(&mut self) {
        close(&self.0);
    }
}

/// Hands every message on a channel to a callback; closes the channel when dropped.
pub struct Listener {
    channel: Object,
    _on_message: Closure<dyn FnMut(JsValue)>,
}

impl Listener {
    /// Listens on channel `name`.
    pub fn new(name: &str, mut on_data: impl FnMut(JsValue) + 'static) -> Result<Self, String> {
        let channel = open(name)?;
        let on_message = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
            on_data(Reflect::get(&ev, &"data".into()).unwrap_or(JsValue::UNDEFINED));
        });
        Reflect::set(&channel, &"onmessage".into(), on_message.as_ref())
            .map_err(|e| format!("BroadcastChannel {name}: {e:?}"))?;
        Ok(Self {
            channel,
            _on_message: on_message,
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        close(&self.channel);
    }
}
