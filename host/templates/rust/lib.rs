//! {{name}}: an agent for the wasmclaw gateway.
//!
//! `cargo test` runs the unit tests below natively against a fake gateway;
//! `cargo build --target wasm32-wasip2 --release` builds the component.

use wasmclaw_sdk::{Agent, AgentError, AgentInfo, Output, RunRequest, config, export_agent, log, session};

#[derive(Default)]
struct {{type_name}};

impl Agent for {{type_name}} {
    fn info() -> AgentInfo {
        AgentInfo::new("{{name}}", env!("CARGO_PKG_VERSION"), "Repeats the last message, louder")
    }

    fn run(&self, req: RunRequest, out: &Output) -> Result<(), AgentError> {
        // Settings from the gateway config (`agents.entries.<id>.config`, or `--set suffix=…`).
        let suffix = config::get("suffix").unwrap_or_else(|| "!".into());
        // State kept per session, saved only when the run succeeds.
        let turns = session::get_json::<u32>("turns")?.unwrap_or(0) + 1;
        session::set_json("turns", &turns)?;
        log::info!("turn {turns} of this session");
        let text = req.last_user_text().unwrap_or_default().to_uppercase();
        out.text(text)?;
        out.text(suffix)?;
        Ok(())
    }
}

export_agent!({{type_name}});

#[cfg(test)]
mod tests {
    use super::*;
    use wasmclaw_sdk::testing::TestHost;

    #[test]
    fn shouts_with_the_configured_suffix_and_counts_turns() {
        let mut host = TestHost::new().config("suffix", "!!!");
        let run = host.run::<{{type_name}}>("hello").ok();
        assert_eq!(run.text(), "HELLO!!!");
        let run = host.run::<{{type_name}}>("again").ok();
        assert_eq!(run.text(), "AGAIN!!!");
        assert_eq!(run.state_json::<u32>("turns"), Some(2));
        assert!(run.logged(wasmclaw_sdk::log::Level::Info, "turn 2"));
    }
}
