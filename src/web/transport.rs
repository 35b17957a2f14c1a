//! The one transport of both shells, the page's and the edge's: a [`Transmit`] goes out as a
//! `fetch` through the global scope with web-sys's `RequestInit`, `Headers`, `AbortController`
//! and `Response`, so it runs in a page, a Web Worker and workerd alike (`navigator.sendBeacon`
//! where a keepalive `fetch` is missing or throws), and its answer comes back as the engine's
//! [`Outcome`], always asynchronously. `Request::start` turns a transmit into a request and
//! [`outcome`] a response into an outcome: `Retry-After`, the status, the body when the engine
//! asked for it ([`Transmit::read_body`]); an unread body is drained, never cancelled (a
//! cancelled body shows as a failed request in Chromium's DevTools, `net::ERR_ABORTED`).
//! The debug log lines are written here too, for both shells.
//!
//! With `compression: "gzip"` an ordinary request's body is gzipped first by the host's
//! native `CompressionStream`: PostHog's capture recognises gzip by its magic bytes, so a
//! PostHog body stays `text/plain` with no header (CORS-simple); an OTLP body says
//! `Content-Encoding: gzip`. A batch packed ahead ([`pack`], [`Transmit::gzipped`]) goes as
//! those bytes, at once, on every path: keepalive requests and beacons must leave in the
//! page's last task, before `CompressionStream` could answer, and go plain otherwise.

use super::host;
use super::report::to_js;
use crate::engine::{Outcome, Path, RetryAfter, Start, Transmit, TransmitId};
use serde::Serialize;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{
    AbortController, Headers, ReadableStreamDefaultReader, ReadableStreamReadResult,
    ReadableWritablePair, RequestInit, Response,
};

#[wasm_bindgen]
extern "C" {
    /// The host's `CompressionStream` (web-sys has it only behind its unstable APIs flag).
    type CompressionStream;

    /// `new CompressionStream(format)`; throws where there is none.
    #[wasm_bindgen(constructor, catch)]
    fn new(format: &str) -> Result<CompressionStream, JsValue>;
}

/// Where and how an exporter's requests go; cheap to clone.
#[derive(Clone)]
pub struct Request(Rc<Inner>);

struct Inner {
    endpoint: String,
    /// The user's `headers`, checked at construction; never on keepalive requests.
    headers: Vec<(String, String)>,
    /// Whether `fetch` takes `keepalive` here.
    keepalive_fetch: bool,
    /// `compression: "gzip"`: gzip ordinary bodies where `CompressionStream` exists.
    gzip: bool,
    /// `debug: true`: log each request as it starts.
    debug: bool,
}

impl Request {
    /// Requests to `endpoint` with the user's `headers` (a `Content-Type` among them is left
    /// out: the body's own always goes).
    pub fn new(endpoint: &str, headers: &[(String, String)], gzip: bool, debug: bool) -> Request {
        Request(Rc::new(Inner {
            endpoint: endpoint.into(),
            headers: headers
                .iter()
                .filter(|(name, _)| !name.eq_ignore_ascii_case("content-type"))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
            keepalive_fetch: host::keepalive_fetch(),
            gzip,
            debug,
        }))
    }

    /// POSTs `t.body` (a string: CORS-simple `text/plain`, so no preflight). `answer` is called
    /// once and never synchronously, unless `may_start` says no: a body gzipped here first
    /// asks it, once compressed, whether the request may still start (the engine's
    /// `handle_compressed`: it may have been given up, or a `Retry-After` may have begun). A
    /// keepalive request goes without the user's headers: a custom header forces a preflight,
    /// which cannot finish while a page unloads. Returns the request's `AbortController`.
    pub fn send(
        &self,
        t: Transmit,
        answer: impl FnOnce(Outcome) + 'static,
        may_start: impl FnOnce(usize) -> Start + 'static,
    ) -> Option<AbortController> {
        // In the edge's wasm two shells send (the Worker's own Exporter and the middleware's
        // windows): boxed callbacks make one copy of the request's future serve both. A
        // page's wasm has one caller, and no box.
        #[cfg(feature = "edge")]
        let answer: Box<dyn FnOnce(Outcome)> = Box::new(answer);
        #[cfg(feature = "edge")]
        let may_start: Box<dyn FnOnce(usize) -> Start> = Box::new(may_start);
        self.send_with(t, answer, may_start)
    }

    /// [`send`](Self::send), generic over the callbacks' types: each type is a copy in the wasm.
    fn send_with(
        &self,
        t: Transmit,
        answer: impl FnOnce(Outcome) + 'static,
        may_start: impl FnOnce(usize) -> Start + 'static,
    ) -> Option<AbortController> {
        let read_body = t.read_body;
        let keepalive = t.path != Path::Ordinary;
        // Bodies come gzipped from the engine where a batch was packed ahead; other ordinary
        // ones are gzipped here.
        let gzip = self.0.gzip && !keepalive && t.gzipped.is_none();
        // A keepalive request starts now, in this task (the page may be going away); a body to
        // gzip starts once compressed.
        let (start, controller) = if gzip {
            (None, AbortController::new().ok())
        } else {
            let body = body_of(&t);
            let header = t.gzip_header && t.gzipped.is_some();
            let sent = Sent {
                outlives: t.outlives,
                wire_len: t.wire_len(),
            };
            let (start, controller) = self.start(&t, &body, None, header, sent);
            (Some(start), controller)
        };
        let later = gzip.then(|| (self.clone(), t, controller.clone()));
        // One future for every way a request ends: answered, failed or beaconed.
        spawn_local(async move {
            let start = match (start, later) {
                (Some(start), _) => start,
                (None, Some((request, mut t, controller))) => {
                    let pending = compressed(&t.body, "gzip");
                    // The text is the host's now (a plain copy too, should compressing
                    // fail): freed here rather than held while the request is out.
                    let plain = JsValue::from_str(&t.body);
                    let plain_len = t.body.len();
                    t.body = String::new();
                    let body = pending.await;
                    // The engine says whether it may still start: not if it was given up
                    // meanwhile (so the page never holds more than maxInFlight requests
                    // open), nor under a Retry-After answered meanwhile; and whether it
                    // outlives the page, now that its size is known.
                    let wire_len = body.as_ref().map_or(plain_len, |b| b.length() as usize);
                    let outlives = match may_start(wire_len) {
                        Start::No => return,
                        Start::Ordinary => false,
                        Start::Outliving => true,
                    };
                    let encoded = body.is_some();
                    let body: JsValue = match body {
                        Some(bytes) => bytes.into(),
                        None => plain,
                    };
                    let gzip_header = encoded && t.gzip_header;
                    let sent = Sent { outlives, wire_len };
                    request
                        .start(&t, &body, controller.as_ref(), gzip_header, sent)
                        .0
                }
                (None, None) => return,
            };
            let sent = match start {
                Ok(sent) => sent,
                Err(outcome) => return answer(outcome),
            };
            let response = match JsFuture::from(sent).await {
                Ok(response) => response.unchecked_into::<Response>(),
                Err(e) => return answer(Outcome::NetworkError(host::message(&e))),
            };
            let (outcome, unread) = outcome(&response, read_body).await;
            answer(outcome);
            if unread {
                drain(&response).await;
            }
        });
        controller
    }

    /// Arms `t` (a [`Path::Deferred`] transmit) with `fetchLater`: the browser sends it as the
    /// page goes away. Its result (to ask whether it activated) and its `AbortController`, or
    /// the error `fetchLater` threw (its quota spent, a policy).
    pub fn arm(&self, t: &Transmit) -> Result<(host::FetchLaterResult, AbortController), JsValue> {
        if self.0.debug {
            let sent = Sent {
                outlives: false,
                wire_len: t.wire_len(),
            };
            log_request(t, sent);
        }
        let controller = AbortController::new()?;
        let init = self.init(t, &body_of(t), t.gzip_header && t.gzipped.is_some(), false);
        init.set_signal(Some(&controller.signal()));
        let armed = host::global().fetch_later(&self.0.endpoint, &init)?;
        Ok((armed, controller))
    }

    /// Hands `t` to `navigator.sendBeacon`; whether the browser took it.
    pub fn beacon(&self, t: &Transmit) -> bool {
        matches!(beacon(&url_of(&self.0.endpoint, t), t), Outcome::Accepted)
    }

    /// Starts `t` with `body`, saying `Content-Encoding: gzip` if `gzip_header`: the `fetch`
    /// promise and its `AbortController` (`controller`, or a new one if `None`), or at once
    /// the outcome of a beacon or of a `fetch` that threw.
    fn start(
        &self,
        t: &Transmit,
        body: &JsValue,
        controller: Option<&AbortController>,
        gzip_header: bool,
        sent: Sent,
    ) -> (Result<js_sys::Promise, Outcome>, Option<AbortController>) {
        let r = &self.0;
        // Logged as it starts (a gzipped body starts later than the engine handed it out), so
        // the log line comes just before its `fetch`.
        if r.debug {
            log_request(t, sent);
        }
        let keepalive = t.path != Path::Ordinary;
        let url = url_of(&r.endpoint, t);
        if keepalive && !r.keepalive_fetch {
            return (Err(beacon(&url, t)), None);
        }
        let init = self.init(t, body, gzip_header, !keepalive && !sent.outlives);
        if keepalive || sent.outlives {
            init.unchecked_ref::<host::KeepaliveInit>()
                .set_keepalive(true);
        }
        let controller = match controller {
            Some(c) => Some(c.clone()),
            None => AbortController::new().ok(),
        };
        if let Some(c) = &controller {
            init.set_signal(Some(&c.signal()));
        }
        match host::global().fetch(&url, &init) {
            Ok(sent) => (Ok(sent), controller),
            Err(_) if keepalive => (Err(beacon(&url, t)), None),
            Err(e) => (Err(Outcome::NetworkError(host::message(&e))), None),
        }
    }
}

impl Request {
    /// A POST of `body` with `t`'s `Content-Type`, `Content-Encoding: gzip` if `gzip_header`,
    /// and the user's headers if `user_headers` (never on a request that outlives the page: a
    /// custom header forces a preflight, which cannot finish while a page unloads).
    fn init(
        &self,
        t: &Transmit,
        body: &JsValue,
        gzip_header: bool,
        user_headers: bool,
    ) -> RequestInit {
        let init = RequestInit::new();
        init.set_method("POST");
        init.set_body(body);
        if let Ok(headers) = Headers::new() {
            if user_headers {
                for (name, value) in &self.0.headers {
                    let _ = headers.append(name, value);
                }
            }
            let _ = headers.set("Content-Type", t.content_type);
            if gzip_header {
                let _ = headers.set("Content-Encoding", "gzip");
            }
            init.set_headers(&headers);
        }
        init
    }
}

/// `t`'s body as it goes: the engine's gzip bytes where there are some, else its text.
fn body_of(t: &Transmit) -> JsValue {
    match &t.gzipped {
        Some(bytes) => js_sys::Uint8Array::from(&bytes[..]).into(),
        None => JsValue::from_str(&t.body),
    }
}

/// The outcome `response` says: its status, its `Retry-After`, and its body if `read_body`
/// and it is a 2xx; and whether the body is left unread, to be [drained](drain) once the engine
/// has the outcome.
pub async fn outcome(response: &Response, read_body: bool) -> (Outcome, bool) {
    // A cross-origin response shows Retry-After only if the collector sends
    // Access-Control-Expose-Headers: Retry-After.
    let retry_after = response.headers().get("Retry-After").ok().flatten();
    let retry_after = retry_after.as_deref().and_then(RetryAfter::parse);
    let status = response.status();
    let mut unread = false;
    let body = if read_body && response.ok() {
        let text = match response.text() {
            Ok(text) => JsFuture::from(text).await.ok(),
            Err(_) => None,
        };
        text.and_then(|t| t.as_string())
    } else {
        unread = true;
        None
    };
    let outcome = Outcome::Response {
        status,
        retry_after,
        body,
    };
    (outcome, unread)
}

/// Answers up to this size are drained by reading them whole, which Chromium reports as a
/// finished request. Read through a stream reader instead, a request whose body was gzipped
/// by `CompressionStream` shows as aborted (`net::ERR_ABORTED`) about half the time, as a
/// cancelled one always does.
const DRAIN_WHOLE_BYTES: u32 = 64 * 1024;

/// Reads the answer's body to its end: the connection is let go (edge runtimes warn about
/// unread bodies) and the request does not show as failed, as it does when cancelled. A body
/// that says it is small ([`DRAIN_WHOLE_BYTES`]) is read whole; a larger or unsized one chunk
/// by chunk, each dropped as it comes, so that no large body is held.
async fn drain(response: &Response) {
    let small = response
        .headers()
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|n| n.trim().parse::<u32>().ok())
        .is_some_and(|n| n <= DRAIN_WHOLE_BYTES);
    if small {
        if let Ok(whole) = response.array_buffer() {
            let _ = JsFuture::from(whole).await;
        }
        return;
    }
    let Some(body) = response.body() else {
        return;
    };
    let Ok(reader) = body.get_reader().dyn_into::<ReadableStreamDefaultReader>() else {
        return;
    };
    loop {
        let Ok(chunk) = JsFuture::from(reader.read()).await else {
            return;
        };
        if chunk
            .unchecked_into::<ReadableStreamReadResult>()
            .get_done()
            != Some(false)
        {
            return;
        }
    }
}

/// `text` compressed by the host's `CompressionStream` in `format` (`"gzip"`,
/// `"deflate-raw"`); `None` where there is none or it fails.
///
/// The text is copied into the host's stream at once, when this is called: the caller may
/// free it before awaiting, so a large body does not stay in the wasm's memory (which never
/// shrinks) while it is compressed and sent.
fn compressed(
    text: &str,
    format: &str,
) -> impl std::future::Future<Output = Option<js_sys::Uint8Array>> {
    let buffer = (|| {
        let compress = CompressionStream::new(format).ok()?;
        let plain = Response::new_with_opt_str(Some(text)).ok()?.body()?;
        let stream = plain.pipe_through(compress.unchecked_ref::<ReadableWritablePair>());
        let compressed = Response::new_with_opt_readable_stream(Some(&stream)).ok()?;
        compressed.array_buffer().ok()
    })();
    async move {
        let buffer = JsFuture::from(buffer?).await.ok()?;
        Some(js_sys::Uint8Array::new(&buffer))
    }
}

/// Whether the host compresses asynchronously, gzip and raw deflate alike
/// (`CompressionStream`: Chromium 103, Firefox 113, Safari 16.4), to pack batches ahead.
pub fn can_pack() -> bool {
    CompressionStream::new("deflate-raw").is_ok()
}

/// A [`Notice::Pack`](crate::engine::Notice::Pack) done: `body` gzipped and `lines`
/// raw-deflated by the host, each `None` if not given or the host failed.
/// Both texts go to the host's compressors when this is called, and are freed then.
pub fn pack(
    body: Option<String>,
    lines: Option<String>,
) -> impl std::future::Future<Output = [Option<Vec<u8>>; 2]> {
    let wire = body.map(|text| compressed(&text, "gzip"));
    let copy = lines.map(|text| compressed(&text, "deflate-raw"));
    async move {
        let mut out = [None, None];
        for (slot, pending) in out.iter_mut().zip([wire, copy]) {
            if let Some(pending) = pending {
                *slot = pending.await.map(|b| b.to_vec());
            }
        }
        out
    }
}

/// The URL `t` goes to: the endpoint, with `t`'s query parameter if it has one.
fn url_of<'a>(endpoint: &'a str, t: &Transmit) -> std::borrow::Cow<'a, str> {
    match &t.query {
        None => endpoint.into(),
        Some(q) => {
            let mut url = String::with_capacity(endpoint.len() + 1 + q.len());
            url.push_str(endpoint);
            url.push(if endpoint.contains('?') { '&' } else { '?' });
            url.push_str(q);
            url.into()
        }
    }
}

/// `navigator.sendBeacon(url, …)` with `t`'s body: its gzip bytes as they are (a
/// `BufferSource` sends no `Content-Type`, CORS-simple as a string body is; PostHog reads the
/// gzip by its magic bytes and the URL's `compression`), or its text where there are no gzip
/// bytes or the format would need a `Content-Encoding` header, which a beacon cannot carry.
/// Bytes, not a `Blob`: Chromium registers every Blob with its browser process, about half a
/// millisecond each at `pagehide`.
fn beacon(url: &str, t: &Transmit) -> Outcome {
    let queued = host::global()
        .navigator()
        .map(|n| match (&t.gzipped, t.gzip_header) {
            (Some(bytes), false) => {
                n.send_beacon_with_opt_js_u8_array(url, Some(&js_sys::Uint8Array::from(&bytes[..])))
            }
            // Packed bytes that need a header a beacon cannot carry: nothing to send, as if refused.
            _ if t.body.is_empty() => Ok(false),
            _ => n.send_beacon_with_opt_str(url, Some(&t.body)),
        });
    match queued {
        Some(Ok(true)) => Outcome::Accepted,
        Some(Ok(false)) => Outcome::Refused,
        _ => Outcome::NetworkError("no keepalive fetch and no sendBeacon here".into()),
    }
}

/// How a request starts: with `keepalive: true` though ordinary ([`Transmit::outlives`], or
/// as the engine said once its body was compressed), and its bytes on the wire.
#[derive(Clone, Copy)]
struct Sent {
    outlives: bool,
    wire_len: usize,
}

/// `debug: true`: one line per request as it starts (never the body, which holds the API
/// key): `keepalive` as its `fetch` (or `fetchLater`) has it, `outlives` for an ordinary one
/// with it.
fn log_request(t: &Transmit, sent: Sent) {
    #[derive(Serialize)]
    struct Line {
        id: u64,
        events: usize,
        bytes: usize,
        attempt: u32,
        keepalive: bool,
        outlives: bool,
    }
    let line = Line {
        id: t.id.0,
        events: t.events,
        bytes: sent.wire_len,
        attempt: t.attempt,
        keepalive: t.path != Path::Ordinary || sent.outlives,
        outlives: sent.outlives,
    };
    host::debug("spool: POST", &to_js(&line));
}

/// `debug: true`: one line per outcome.
pub fn log_outcome(id: TransmitId, outcome: &Outcome) {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Line<'a> {
        id: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_until: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    }
    let line = match outcome {
        Outcome::Response {
            status,
            retry_after,
            ..
        } => Line {
            id: id.0,
            status: Some(*status),
            retry_after_ms: match retry_after {
                Some(RetryAfter::Delay(ms)) => Some(*ms),
                _ => None,
            },
            retry_after_until: match retry_after {
                Some(RetryAfter::At(ms)) => Some(*ms),
                _ => None,
            },
            error: None,
        },
        Outcome::NetworkError(e) => Line {
            id: id.0,
            status: None,
            retry_after_ms: None,
            retry_after_until: None,
            error: Some(e),
        },
        Outcome::Timeout => Line {
            id: id.0,
            status: None,
            retry_after_ms: None,
            retry_after_until: None,
            error: Some("timeout"),
        },
        Outcome::Accepted | Outcome::Refused => Line {
            id: id.0,
            status: None,
            retry_after_ms: None,
            retry_after_until: None,
            error: Some(match outcome {
                Outcome::Accepted => "accepted by the browser, unanswered",
                _ => "refused by the browser",
            }),
        },
    };
    host::debug("spool: outcome", &to_js(&line));
}
