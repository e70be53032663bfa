//! The origin-private file system (OPFS): the worker writes a download there tensor by tensor
//! through a synchronous access handle (dedicated workers have them), and the page hands the
//! finished file to the browser as a download. The file lives on disk, so a 6 GB model never sits
//! in the wasm heap (4 GiB) or in the page's memory. Read through JS reflection: web-sys exposes
//! these APIs only behind its unstable-API flag.

use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

fn get(o: &JsValue, k: &str) -> JsValue {
    Reflect::get(o, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED)
}

fn describe(e: JsValue) -> String {
    e.as_string()
        .or_else(|| get(&e, "message").as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Calls `o.name(args…)`, awaiting it when it returns a promise.
async fn call(o: &JsValue, name: &str, args: &[JsValue]) -> Result<JsValue, String> {
    let f: Function = get(o, name)
        .dyn_into()
        .map_err(|_| format!("this browser has no {name} here"))?;
    let out = f.apply(o, &args.iter().collect::<js_sys::Array>()).map_err(describe)?;
    match out.dyn_into::<Promise>() {
        Ok(p) => JsFuture::from(p).await.map_err(describe),
        Err(v) => Ok(v),
    }
}

/// The OPFS root directory, or why there is none.
async fn root() -> Result<JsValue, String> {
    let storage = get(&get(&js_sys::global().into(), "navigator"), "storage");
    if storage.is_undefined() {
        return Err("this browser has no storage API (OPFS)".into());
    }
    call(&storage, "getDirectory", &[]).await
}

/// A file being written in OPFS from the worker.
pub struct Writer {
    access: JsValue,
    at: f64,
}

impl Writer {
    /// Creates (or empties) the OPFS file `name` for writing.
    pub async fn create(name: &str) -> Result<Self, String> {
        let dir = root().await?;
        let options = Object::new();
        Reflect::set(&options, &"create".into(), &JsValue::TRUE).map_err(describe)?;
        let file = call(&dir, "getFileHandle", &[name.into(), options.into()]).await?;
        let access = call(&file, "createSyncAccessHandle", &[]).await?;
        call(&access, "truncate", &[0.into()]).await?;
        Ok(Self { access, at: 0.0 })
    }

    /// Appends `bytes`; a short write (a full disk) is an error.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let f: Function = get(&self.access, "write")
            .dyn_into()
            .map_err(|_| "no write".to_string())?;
        let options = Object::new();
        Reflect::set(&options, &"at".into(), &self.at.into()).map_err(describe)?;
        let n = f
            .call2(&self.access, &Uint8Array::from(bytes), &options)
            .map_err(describe)?
            .as_f64()
            .unwrap_or(0.0);
        if n as usize != bytes.len() {
            return Err(format!(
                "wrote {n} of {} bytes at {}: is the disk full?",
                bytes.len(),
                self.at
            ));
        }
        self.at += n;
        Ok(())
    }

    /// Flushes and closes the file.
    pub async fn close(self) -> Result<(), String> {
        call(&self.access, "flush", &[]).await?;
        call(&self.access, "close", &[]).await?;
        Ok(())
    }
}

/// The OPFS file `name` as a `File` (a disk-backed `Blob`), for the page to offer as a download.
pub async fn file(name: &str) -> Result<web_sys::Blob, String> {
    let dir = root().await?;
    let handle = call(&dir, "getFileHandle", &[name.into()]).await?;
    call(&handle, "getFile", &[]).await?.dyn_into().map_err(describe)
}
