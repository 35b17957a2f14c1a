//! spool from a Rust app compiled to wasm (a Leptos or Yew front end, a workers-rs Worker):
//! the typed `Config`, `capture(name, &impl Serialize)`, `flush().await` and
//! `shutdown(timeout).await` of `spool::web::Client`.
//!
//! `cargo build --example rust_app --target wasm32-unknown-unknown` builds it; the README
//! shows the same code, and `tests/schema.rs` checks that it does.

#[cfg(target_arch = "wasm32")]
mod app {
    // README example start
    use serde::Serialize;
    use spool::engine::{BatchMode, Config};
    use spool::web::{Client, Error};
    use std::time::Duration;

    #[derive(Serialize)]
    struct Signup<'a> {
        plan: &'a str,
        seats: u32,
    }

    pub async fn run() -> Result<(), Error> {
        let config = Config {
            api_key: "phc_...".into(),
            batch_mode: BatchMode::Auto,
            ..Config::new("https://collector.example/batch/")
        };
        let client = Client::new(config).expect("a valid config");
        let signup = Signup {
            plan: "pro",
            seats: 3,
        };
        let uuid = client.capture("signup", &signup)?;
        let report = client.flush().await?; // once the events captured so far have settled
        assert_eq!(report.delivered + report.dropped, 1);
        let stats = client.stats()?;
        let _ = (uuid, stats.requests);
        client.shutdown(Duration::from_secs(2)).await?;
        Ok(())
    }
    // README example end
}

fn main() {
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_futures::spawn_local(async {
        let _ = app::run().await;
    });
}
