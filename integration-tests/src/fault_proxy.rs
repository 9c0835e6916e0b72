//! [`FaultProxy`]: an HTTP proxy between the SDK clients and an emulator (loopback only)
//! that injects faults into the calls a test names, for suites that prove the libraries'
//! promises when Kinesis or DynamoDB misbehave.
//!
//! ```text
//!  SDK client ─▶ FaultProxy (127.0.0.1:port) ─▶ emulator endpoint
//!                 X-Amz-Target = "Service_Version.Operation" ─▶ the Rules, in order:
//!                   the first that matches and hits (1 call in `one_in` of those it
//!                   matches) ─▶ its Fault:
//!                     Error { status, code }  answered here, as the service would
//!                     Delay(d)                forwarded after d
//!                     Blackhole               no answer until the rules change, then reset
//!                     Reset                   connection closed, nothing forwarded
//!                     ResetAfterForward       forwarded (the service acts), answer dropped
//!                   otherwise (and with no rule) ─▶ forwarded as is, bodies streamed
//! ```
//!
//! Rules change at any time ([`FaultProxy::set_rules`], [`FaultProxy::clear`]); every
//! injected fault is counted per operation ([`FaultProxy::injected`]) and per kind of fault
//! ([`FaultProxy::injected_by_kind`], [`FaultProxy::report`] for a suite to print), and
//! every call per operation ([`FaultProxy::calls_by_operation`]). Which calls of a
//! rule are hit is deterministic (every `one_in`-th), so a suite's run can be repeated.
//!
//! # Usage
//! ```no_run
//! # async fn demo(stack: kinesis_emulators::LocalStack) -> std::io::Result<()> {
//! use integration_tests::fault_proxy::{Fault, FaultProxy, Rule};
//!
//! let proxy = FaultProxy::start(stack.dynamodb_endpoint()).await?;
//! let dynamodb = proxy.route_dynamodb(&stack.dynamodb_client());
//! proxy.set_rules(vec![Rule::new("DynamoDB_20120810.", Fault::Blackhole)]);
//! // ... DynamoDB is unreachable through `dynamodb` ...
//! proxy.clear();
//! # let _ = dynamodb; Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What happens to a call a rule hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answered here with this HTTP status and error code (`__type`), as the service
    /// answers an error: e.g. 400 `ProvisionedThroughputExceededException`, 500
    /// `InternalFailure`, 503 `ServiceUnavailable`.
    Error {
        /// The HTTP status.
        status: u16,
        /// The error code, as the service names it.
        code: String,
    },
    /// Forwarded after this delay.
    Delay(Duration),
    /// Never answered while the rule stands; the connection is reset when the rules change.
    Blackhole,
    /// The connection is closed before anything is forwarded.
    Reset,
    /// Forwarded (the service acts on it), then the connection is closed instead of the
    /// answer: the caller cannot know it succeeded.
    ResetAfterForward,
}

impl Fault {
    /// What kind of fault this is, as [`FaultProxy::injected_by_kind`] counts it: the error
    /// code for an error answer (`ProvisionedThroughputExceededException`, ...), else
    /// `Delay`, `Blackhole`, `Reset` or `ResetAfterForward`.
    pub fn kind(&self) -> &str {
        match self {
            Fault::Error { code, .. } => code,
            Fault::Delay(_) => "Delay",
            Fault::Blackhole => "Blackhole",
            Fault::Reset => "Reset",
            Fault::ResetAfterForward => "ResetAfterForward",
        }
    }

    /// An error answer with `status` and `code`.
    pub fn error(status: u16, code: &str) -> Self {
        Fault::Error {
            status,
            code: code.to_owned(),
        }
    }
}

/// Which calls get a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// A part of the call's `X-Amz-Target` (e.g. `DynamoDB_20120810.` for every DynamoDB
    /// call, `GetRecords` for one operation); empty matches every call.
    pub target: String,
    /// The fault.
    pub fault: Fault,
    /// One call in this many of those the rule matches gets the fault (1: every call).
    pub one_in: u64,
}

impl Rule {
    /// Every call whose target contains `target` gets `fault`.
    pub fn new(target: &str, fault: Fault) -> Self {
        Self {
            target: target.to_owned(),
            fault,
            one_in: 1,
        }
    }

    /// Only one call in `n` (at least 1) of those the rule matches.
    pub fn one_in(mut self, n: u64) -> Self {
        self.one_in = n.max(1);
        self
    }
}

/// The rules in force, with a count of the calls each has matched.
#[derive(Debug, Default)]
struct Rules {
    /// The rules, first match wins.
    rules: Vec<Rule>,
    /// Calls matched so far, per rule.
    matched: Vec<u64>,
}

/// Shared by the proxy's connections.
#[derive(Debug)]
struct State {
    /// Where calls go, e.g. `http://127.0.0.1:4567`.
    upstream: String,
    /// The rules.
    rules: Mutex<Rules>,
    /// Bumped on every rule change: ends blackholes.
    generation: watch::Sender<u64>,
    /// Faults injected, per operation.
    injected: Mutex<HashMap<String, u64>>,
    /// Faults injected, per kind ([`Fault::kind`]).
    injected_kinds: Mutex<BTreeMap<String, u64>>,
    /// Calls seen, all operations.
    calls: AtomicU64,
    /// Calls seen, per operation.
    seen: Mutex<HashMap<String, u64>>,
    /// The client that forwards.
    client: Client<HttpConnector, Incoming>,
}

/// A running proxy; stops when dropped. See the module docs.
#[derive(Debug)]
pub struct FaultProxy {
    /// The proxy's address.
    addr: SocketAddr,
    /// Shared with the connections.
    state: Arc<State>,
    /// The accept loop.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A response body of either origin.
type Body = BoxBody<Bytes, hyper::Error>;

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (an `http://` URL).
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            rules: Mutex::new(Rules::default()),
            generation: watch::channel(0).0,
            injected: Mutex::new(HashMap::new()),
            injected_kinds: Mutex::new(BTreeMap::new()),
            calls: AtomicU64::new(0),
            seen: Mutex::new(HashMap::new()),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// The endpoint URL to give the SDK client.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `client` again, its calls sent through this proxy (a Kinesis client of the upstream
    /// it forwards to).
    pub fn route_kinesis(&self, client: &aws_sdk_kinesis::Client) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::from_conf(
            client
                .config()
                .to_builder()
                .endpoint_url(self.endpoint())
                .build(),
        )
    }

    /// `client` again, its calls sent through this proxy (a DynamoDB client of the
    /// upstream it forwards to).
    pub fn route_dynamodb(&self, client: &aws_sdk_dynamodb::Client) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            client
                .config()
                .to_builder()
                .endpoint_url(self.endpoint())
                .build(),
        )
    }

    /// Replaces the rules (ending any blackhole of the old ones).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        let mut r = self.state.rules.lock().expect("not poisoned");
        r.matched = vec![0; rules.len()];
        r.rules = rules;
        drop(r);
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// Removes every rule: calls pass through again.
    pub fn clear(&self) {
        self.set_rules(Vec::new());
    }

    /// Faults injected so far, per operation (the part of the target after the dot).
    pub fn injected(&self) -> HashMap<String, u64> {
        self.state.injected.lock().expect("not poisoned").clone()
    }

    /// Faults injected so far, per kind of fault ([`Fault::kind`]: the error code, or
    /// `Delay`, `Blackhole`, `Reset`, `ResetAfterForward`), all operations; counted since
    /// the proxy started, across rule changes.
    pub fn injected_by_kind(&self) -> BTreeMap<String, u64> {
        self.state
            .injected_kinds
            .lock()
            .expect("not poisoned")
            .clone()
    }

    /// One line for a suite to print: calls seen, then what fired how often, by kind and by
    /// operation, e.g. `1234 calls; injected 321: InternalFailure 40, Reset 25;
    /// PutRecords 321`.
    pub fn report(&self) -> String {
        let by_kind: Vec<String> = self
            .injected_by_kind()
            .into_iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let mut by_op: Vec<(String, u64)> = self.injected().into_iter().collect();
        by_op.sort();
        let by_op: Vec<String> = by_op.into_iter().map(|(k, n)| format!("{k} {n}")).collect();
        format!(
            "{} calls; injected {}: {}; {}",
            self.calls(),
            self.injected_total(),
            by_kind.join(", "),
            by_op.join(", ")
        )
    }

    /// Faults injected so far, all operations.
    pub fn injected_total(&self) -> u64 {
        self.injected().values().sum()
    }

    /// Calls seen so far, per operation (the part of the target after the dot).
    pub fn calls_by_operation(&self) -> HashMap<String, u64> {
        self.state.seen.lock().expect("not poisoned").clone()
    }

    /// Calls seen so far.
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::Relaxed)
    }
}

/// The fault for a call to `target`, if a rule hits it: the rules are tried in order,
/// each counting the calls it matches; the first whose turn it is applies.
fn decide(state: &State, target: &str) -> Option<Fault> {
    let mut r = state.rules.lock().expect("not poisoned");
    let Rules { rules, matched } = &mut *r;
    for (i, rule) in rules.iter().enumerate() {
        if !target.contains(rule.target.as_str()) {
            continue;
        }
        matched[i] += 1;
        if matched[i] % rule.one_in == 0 {
            return Some(rule.fault.clone());
        }
    }
    None
}

/// An error answer as the AWS JSON protocols give it.
fn error_response(status: u16, code: &str, target: &str) -> Response<Body> {
    let content_type = if target.starts_with("DynamoDB") {
        "application/x-amz-json-1.0"
    } else {
        "application/x-amz-json-1.1"
    };
    let body = format!(r#"{{"__type":"{code}","message":"injected by the fault proxy"}}"#);
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-errortype", code)
        .body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
        .expect("valid response")
}

/// Serves one call.
async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, ProxyError> {
    state.calls.fetch_add(1, Ordering::Relaxed);
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let op = target.rsplit('.').next().unwrap_or_default().to_owned();
    *state
        .seen
        .lock()
        .expect("not poisoned")
        .entry(op.clone())
        .or_default() += 1;
    let fault = decide(&state, &target);
    if let Some(f) = &fault {
        *state
            .injected
            .lock()
            .expect("not poisoned")
            .entry(op)
            .or_default() += 1;
        *state
            .injected_kinds
            .lock()
            .expect("not poisoned")
            .entry(f.kind().to_owned())
            .or_default() += 1;
    }
    match fault {
        Some(Fault::Error { status, code }) => return Ok(error_response(status, &code, &target)),
        Some(Fault::Reset) => return Err(ProxyError("reset")),
        Some(Fault::Blackhole) => {
            let mut generation = state.generation.subscribe();
            let _ = generation.changed().await;
            return Err(ProxyError("blackhole ended"));
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::ResetAfterForward) | None => {}
    }
    let reset_after = matches!(fault, Some(Fault::ResetAfterForward));
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = format!("{}{path}", state.upstream)
        .parse()
        .map_err(|_| ProxyError("bad upstream URL"))?;
    parts.headers.remove("host");
    let answer = state
        .client
        .request(Request::from_parts(parts, body))
        .await
        .map_err(|_| ProxyError("upstream failed"))?;
    if reset_after {
        // Let the service finish, then drop its answer.
        let _ = answer.into_body().collect().await;
        return Err(ProxyError("answer dropped"));
    }
    Ok(answer.map(|b| b.boxed()))
}

/// Why the proxy closed a connection instead of answering.
#[derive(Debug)]
struct ProxyError(&'static str);

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ProxyError {}
