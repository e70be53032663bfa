//! `model.safetensors` read from a URL one byte range at a time (HTTP `Range` requests, which
//! Chromium also answers for the `blob:` URL of a picked file). The loader asks for the header and
//! then for each tensor in turn, so a 6 GB GPT2-XL file never sits whole in wasm memory (4 GiB).
//!
//! The worker reads synchronously (a dedicated worker may block on `XMLHttpRequest`), which fits
//! the engine's synchronous [`ByteSource`]. A server that ignores `Range` and answers 200 with
//! the whole body is still served: the body is kept and sliced.

/// Parses a `Content-Range: bytes START-END/TOTAL` header into `(start, end_inclusive, total)`.
pub fn parse_content_range(header: &str) -> Option<(u64, u64, u64)> {
    let rest = header.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end, total) = (
        start.trim().parse().ok()?,
        end.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    (start <= end && end < total).then_some((start, end, total))
}

/// The `Range` header value for `len` bytes at `offset` (`len` > 0).
pub fn range_header(offset: u64, len: usize) -> String {
    format!("bytes={offset}-{}", offset + len as u64 - 1)
}

#[cfg(target_arch = "wasm32")]
pub use source::RangeSource;

#[cfg(target_arch = "wasm32")]
mod source {
    use std::path::{Path, PathBuf};

    use pmedit_engine::EngineError;
    use pmedit_engine::load::ByteSource;
    use wasm_bindgen::prelude::*;

    use super::{parse_content_range, range_header};

    #[wasm_bindgen]
    extern "C" {
        /// The browser's `XMLHttpRequest` (declared here: only the few calls used).
        #[wasm_bindgen(js_name = XMLHttpRequest)]
        type Xhr;
        #[wasm_bindgen(constructor, js_class = "XMLHttpRequest", catch)]
        fn new() -> Result<Xhr, JsValue>;
        #[wasm_bindgen(method, catch, js_class = "XMLHttpRequest")]
        fn open(this: &Xhr, method: &str, url: &str, asynchronous: bool) -> Result<(), JsValue>;
        #[wasm_bindgen(method, catch, js_class = "XMLHttpRequest", js_name = setRequestHeader)]
        fn set_request_header(this: &Xhr, name: &str, value: &str) -> Result<(), JsValue>;
        #[wasm_bindgen(method, setter, js_class = "XMLHttpRequest", js_name = responseType)]
        fn set_response_type(this: &Xhr, value: &str);
        #[wasm_bindgen(method, catch, js_class = "XMLHttpRequest")]
        fn send(this: &Xhr) -> Result<(), JsValue>;
        #[wasm_bindgen(method, getter, js_class = "XMLHttpRequest")]
        fn status(this: &Xhr) -> u16;
        #[wasm_bindgen(method, getter, js_class = "XMLHttpRequest")]
        fn response(this: &Xhr) -> JsValue;
        #[wasm_bindgen(method, js_class = "XMLHttpRequest", js_name = getResponseHeader)]
        fn get_response_header(this: &Xhr, name: &str) -> Option<String>;
    }

    /// A URL read with range requests.
    pub struct RangeSource {
        url: String,
        name: PathBuf,
        len: u64,
        /// The whole body, when the server ignored `Range`.
        whole: Option<Vec<u8>>,
        /// Bytes read so far, and whom to tell (`done`, `total`).
        done: u64,
        progress: Option<Box<dyn FnMut(u64, u64)>>,
    }

    impl RangeSource {
        /// Asks for the first bytes of `url` to learn its length (or, from a server without range
        /// support, gets the whole body); `name` labels errors.
        pub fn open(url: &str, name: impl Into<PathBuf>) -> pmedit_engine::Result<Self> {
            let name = name.into();
            let (status, body, range) = get(url, Some((0, 8)), &name)?;
            let (len, whole) = match status {
                206 => match range.as_deref().and_then(parse_content_range) {
                    Some((_, _, total)) => (total, None),
                    None => return Err(bad(&name, format!("{url}: a 206 answer without a valid Content-Range"))),
                },
                200 => (body.len() as u64, Some(body)),
                // An empty file answers 416 to any range.
                416 => (0, Some(Vec::new())),
                s => return Err(bad(&name, format!("fetching {url}: HTTP {s}"))),
            };
            Ok(Self {
                url: url.into(),
                name,
                len,
                whole,
                done: 0,
                progress: None,
            })
        }

        /// Calls `progress(bytes read so far, total)` after every read.
        pub fn with_progress(mut self, progress: impl FnMut(u64, u64) + 'static) -> Self {
            self.progress = Some(Box::new(progress));
            self
        }

        fn tell(&mut self, n: usize) {
            self.done += n as u64;
            if let Some(p) = &mut self.progress {
                p(self.done.min(self.len), self.len);
            }
        }
    }

    impl ByteSource for RangeSource {
        fn len(&self) -> u64 {
            self.len
        }
        fn read_at(&mut self, offset: u64, len: usize) -> pmedit_engine::Result<Vec<u8>> {
            let end = offset.checked_add(len as u64).filter(|&e| e <= self.len);
            if end.is_none() {
                return Err(bad(
                    &self.name,
                    format!("read of {len} bytes at {offset} is past the end ({} bytes)", self.len),
                ));
            }
            if len == 0 {
                return Ok(Vec::new());
            }
            if let Some(w) = &self.whole {
                let bytes = w[offset as usize..offset as usize + len].to_vec();
                self.tell(len);
                return Ok(bytes);
            }
            let (status, body, _) = get(&self.url, Some((offset, len)), &self.name)?;
            match status {
                206 if body.len() == len => {
                    self.tell(len);
                    Ok(body)
                }
                206 => Err(bad(
                    &self.name,
                    format!(
                        "asked for {len} bytes at {offset}, got {}: did the file change?",
                        body.len()
                    ),
                )),
                s => Err(bad(&self.name, format!("reading bytes at {offset}: HTTP {s}"))),
            }
        }
        fn name(&self) -> &Path {
            &self.name
        }
    }

    fn bad(name: &Path, reason: String) -> EngineError {
        EngineError::Safetensors {
            path: name.to_path_buf(),
            reason,
        }
    }

    /// A synchronous GET (allowed in workers), optionally of a byte range: status, body and the
    /// `Content-Range` header.
    fn get(
        url: &str,
        range: Option<(u64, usize)>,
        name: &Path,
    ) -> pmedit_engine::Result<(u16, Vec<u8>, Option<String>)> {
        let js = |e: JsValue| {
            bad(
                name,
                format!("fetching {url}: {}", e.as_string().unwrap_or_else(|| format!("{e:?}"))),
            )
        };
        let xhr = Xhr::new().map_err(js)?;
        xhr.open("GET", url, false).map_err(js)?;
        xhr.set_response_type("arraybuffer");
        if let Some((offset, len)) = range {
            xhr.set_request_header("Range", &range_header(offset, len))
                .map_err(js)?;
        }
        xhr.send().map_err(js)?;
        let status = xhr.status();
        let body = xhr.response();
        let body = if body.is_instance_of::<js_sys::ArrayBuffer>() {
            js_sys::Uint8Array::new(&body).to_vec()
        } else {
            Vec::new()
        };
        Ok((status, body, xhr.get_response_header("Content-Range")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_headers_parse() {
        assert_eq!(parse_content_range("bytes 0-7/1000"), Some((0, 7, 1000)));
        assert_eq!(parse_content_range(" bytes 10-19/20 "), Some((10, 19, 20)));
        assert_eq!(parse_content_range("bytes */1000"), None);
        assert_eq!(parse_content_range("bytes 5-4/1000"), None);
        assert_eq!(parse_content_range("bytes 0-1000/1000"), None);
        assert_eq!(parse_content_range("items 0-7/1000"), None);
        assert_eq!(parse_content_range("bytes 0-7/*"), None);
    }

    #[test]
    fn range_headers_are_inclusive() {
        assert_eq!(range_header(0, 8), "bytes=0-7");
        assert_eq!(range_header(100, 1), "bytes=100-100");
    }
}
