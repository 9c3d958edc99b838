//! A real `terse-server` on a free loopback port, serving the default model (pulled
//! into the cache first if it is not there), for the integration tests.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::{Duration, Instant};
use terse_engine::{Engine, EngineOptions, SamplerConfig};
use terse_reason::LocalBackend;
use terse_server::{Defaults, Loader, Model, Server, ServerConfig};
use terse_store::{ModelStore, StoreError, DEFAULT_MODEL};

/// The context of the test servers: small, so a prompt over it is cheap to build.
pub const CTX: usize = 1024;

pub struct Options {
    pub api_key: Option<String>,
    pub max_sequences: usize,
    pub max_queue: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            api_key: None,
            max_sequences: 4,
            max_queue: 64,
        }
    }
}

/// Loads the default model into a local backend.
pub fn model_loader(max_sequences: usize) -> Loader {
    Box::new(move || {
        let store = ModelStore::from_env().map_err(|e| e.to_string())?;
        let path = match store.resolve(DEFAULT_MODEL) {
            Err(StoreError::NotPulled { alias, .. }) => store.pull(&alias, false),
            other => other,
        }
        .map_err(|e| e.to_string())?;
        let engine = Engine::load(
            &path,
            &EngineOptions {
                threads: 2,
                ctx_size: CTX,
                kv_capacity_tokens: max_sequences * CTX,
            },
        )
        .map_err(|e| e.to_string())?;
        LocalBackend::new(engine, max_sequences)
            .map(|b| Model::Local(Box::new(b)))
            .map_err(|e| e.to_string())
    })
}

/// Starts a server on its own runtime thread (it serves until the test process ends)
/// and returns its base URL, `http://127.0.0.1:PORT`, without waiting for the model.
pub fn start_with(options: Options, loader: Loader) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            let server = Server::bind(ServerConfig {
                host: "127.0.0.1".into(),
                port: 0,
                model_name: DEFAULT_MODEL.into(),
                api_key: options.api_key,
                max_sequences: options.max_sequences,
                max_queue: options.max_queue,
                defaults: Defaults {
                    sampling: SamplerConfig::default(),
                    max_tokens: 16,
                    strategy: terse_reason::StrategySpec::none(),
                    presets: terse_server::strategy::Presets::default(),
                },
            })
            .await
            .expect("bind a loopback port");
            let addr = server.local_addr().expect("the bound address");
            tx.send(format!("http://{addr}"))
                .expect("report the address");
            if let Err(e) = server.run(loader, std::future::pending()).await {
                eprintln!("test server stopped: {e}");
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the server binds within 30 s")
}

/// Starts a server with the default model and waits until `/health` says 200.
pub fn start(options: Options) -> String {
    let max_sequences = options.max_sequences;
    let base = start_with(options, model_loader(max_sequences));
    wait_healthy(&base);
    base
}

pub fn wait_healthy(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if get_status(base, "/health") == Some(200) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{base}/health did not answer 200 within 300 s");
}

/// The status of a plain `GET path` (HTTP/1.0 over a std socket, so it works from any
/// thread without a runtime); `None` when nothing answers.
pub fn get_status(base: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let addr = base.strip_prefix("http://")?;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A proxy server in front of `upstream` (nothing needs to listen there).
pub fn start_proxy(upstream: &str) -> String {
    let upstream = terse_server::Upstream {
        base_url: upstream.to_string(),
        model: DEFAULT_MODEL.into(),
        api_key: None,
    };
    let base = start_with(
        Options::default(),
        Box::new(move || Ok(Model::Proxy(upstream))),
    );
    wait_healthy(&base);
    base
}

/// A real llama.cpp server (built by `scripts/build-llama-cpp.sh`, which CI runs before
/// the tests) on the default model and a free port; stopped when dropped.
pub struct LlamaServer {
    child: std::process::Child,
    pub base: String,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl LlamaServer {
    pub fn start() -> LlamaServer {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/build-llama-cpp.sh"
        );
        let out = std::process::Command::new("bash")
            .arg(script)
            .output()
            .expect("run build-llama-cpp.sh");
        assert!(
            out.status.success(),
            "scripts/build-llama-cpp.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let bin = bin.lines().last().unwrap_or_default().to_string();
        let store = ModelStore::from_env().expect("the model cache");
        let model = store
            .resolve(DEFAULT_MODEL)
            .expect("the default model pulled");
        let port = free_port();
        let child = std::process::Command::new(std::path::Path::new(&bin).join("llama-server"))
            .arg("-m")
            .arg(&model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-t", "2", "-c", "2048", "--jinja", "--parallel", "2"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start llama-server");
        let server = LlamaServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        wait_healthy(&server.base);
        server
    }
}
