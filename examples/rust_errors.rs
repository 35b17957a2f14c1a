//! `spool::web::Error` in an app's own error handling: it is a `std::error::Error`, so `?`
//! carries it into a `Box<dyn Error>` (docs/rust.md shows this function).
//!
//! `make lint` compiles it for wasm32 (`cargo clippy --all-targets --target
//! wasm32-unknown-unknown`).

#[cfg(target_arch = "wasm32")]
mod app {
    // docs/rust.md example start
    async fn signup(client: &spool::web::Client) -> Result<(), Box<dyn std::error::Error>> {
        client.capture("signup", &serde_json::json!({ "plan": "pro" }))?;
        let report = client.flush().await?;
        println!("{} delivered", report.delivered);
        Ok(())
    }
    // docs/rust.md example end

    pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
        let mut config = spool::engine::Config::new("https://collector.example/batch/");
        config.api_key = "phc_...".into();
        let client = spool::web::Client::new(config)?;
        signup(&client).await
    }
}

fn main() {
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_futures::spawn_local(async {
        let _ = app::run().await;
    });
}
