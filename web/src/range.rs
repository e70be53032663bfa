//! `model.safetensors` read from a URL one byte range at a time (HTTP `Range` requests, which
//! Chromium also answers for the `blob:` URL of a picked file). The loader asks for the header and
//! then for each tensor in turn, served from a 4 MiB read-ahead window, so a 6 GB GPT2-XL file never
//! sits whole in wasm memory (4 GiB).
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

/// Bytes fetched per request for small reads: the loader asks for one tensor (or a 256 KiB
/// piece of a big one) at a time, and one round trip per piece made the 6.6 MB demo model take
/// ≈ 600 requests. Reads are served from a window of this size instead; it bounds the extra
/// memory, and a GPT2-XL file still streams (≈ 1,500 requests).
pub const READ_AHEAD: usize = 4 << 20;

/// The last span fetched from the URL, serving the reads that fall inside it.
#[derive(Debug, Default)]
pub struct Window {
    start: u64,
    bytes: Vec<u8>,
}

impl Window {
    /// The bytes `offset..offset + len` when the window holds all of them.
    pub fn get(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let from = usize::try_from(offset.checked_sub(self.start)?).ok()?;
        self.bytes.get(from..from.checked_add(len)?)
    }

    /// The span to fetch for a read of `len` bytes at `offset` that the window misses, in a file of
    /// `file_len` bytes: at least the read, [`READ_AHEAD`] when the file has that much left.
    pub fn span(offset: u64, len: usize, file_len: u64) -> (u64, usize) {
        let left = usize::try_from(file_len.saturating_sub(offset)).unwrap_or(usize::MAX);
        (offset, len.max(READ_AHEAD.min(left)))
    }

    /// Keeps `bytes`, fetched from `start`.
    pub fn fill(&mut self, start: u64, bytes: Vec<u8>) {
        self.start = start;
        self.bytes = bytes;
    }
}

#[cfg(target_family = "wasm")]
pub use source::RangeSource;

#[cfg(target_family = "wasm")]
mod source {
    use std::path::{Path, PathBuf};

    use pmedit_engine::EngineError;
    use pmedit_engine::load::ByteSource;
    use wasm_bindgen::prelude::*;

    use super::{Window, parse_content_range, range_header};

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
        /// The last span fetched ([`super::READ_AHEAD`] bytes), serving reads inside it.
        window: Window,
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
                window: Window::default(),
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
            if let Some(bytes) = self.window.get(offset, len) {
                return Ok(bytes.to_vec());
            }
            let (start, want) = Window::span(offset, len, self.len);
            let (status, body, _) = get(&self.url, Some((start, want)), &self.name)?;
            match status {
                206 if body.len() == want => {
                    self.tell(want);
                    if want == len {
                        return Ok(body);
                    }
                    let bytes = body[..len].to_vec();
                    self.window.fill(start, body);
                    Ok(bytes)
                }
                206 => Err(bad(
                    &self.name,
                    format!(
                        "asked for {want} bytes at {start}, got {}: did the file change?",
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
    fn the_window_serves_reads_inside_it_only() {
        let mut w = Window::default();
        assert_eq!(w.get(0, 1), None);
        assert_eq!(w.get(0, 0), Some(&[][..]));
        w.fill(100, (0..10).collect());
        assert_eq!(w.get(100, 10), Some(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9][..]));
        assert_eq!(w.get(103, 2), Some(&[3, 4][..]));
        assert_eq!(w.get(109, 1), Some(&[9][..]));
        assert_eq!(w.get(109, 2), None, "past the window's end");
        assert_eq!(w.get(99, 2), None, "before the window");
        assert_eq!(w.get(u64::MAX, 1), None);
    }

    #[test]
    fn misses_fetch_a_read_ahead_span_within_the_file() {
        let file = 10 * READ_AHEAD as u64;
        assert_eq!(Window::span(8, 100, file), (8, READ_AHEAD));
        // A read bigger than the window is fetched as it is.
        assert_eq!(Window::span(0, 2 * READ_AHEAD, file), (0, 2 * READ_AHEAD));
        // Near the end only what is left.
        assert_eq!(Window::span(file - 10, 4, file), (file - 10, 10));
        assert_eq!(Window::span(file - 4, 4, file), (file - 4, 4));
    }

    #[test]
    fn range_headers_are_inclusive() {
        assert_eq!(range_header(0, 8), "bytes=0-7");
        assert_eq!(range_header(100, 1), "bytes=100-100");
    }
}
