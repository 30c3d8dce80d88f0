//! Contract versions side by side. Each supported `wasmclaw:agent` world has
//! a module of its own with its generated bindings and the conversions to the
//! host's types (`crate::chat`); `latest` names the newest. A component is
//! served by the first world whose exports it fits, newest first, and every
//! world's imports are in the one linker, so an old component keeps loading
//! after a new world is added. Adding a version: a `wit/v0.N/` package, a
//! `v0_N` module (its bindings, then `host_imports!()` for the imports every
//! world shares, then what this world changes), a variant of [`AgentPre`], a line in [`add_to_linker`],
//! [`WORLDS`] and [`AgentPre::new`] (first, as the newest), and `latest`.
//! A 0.1 component sees each message's text view (`chat::Message::content`);
//! a 0.2 component sees its parts.

#[macro_use]
mod host_imports;
pub mod v0_1;
pub mod v0_2;

pub use v0_2 as latest;

use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use super::capabilities::RunState;
use crate::chat::{AgentError, AgentInfo, RunRequest};

/// The worlds served, newest first, as load errors name them.
pub const WORLDS: &[&str] = &[latest::WORLD, v0_1::WORLD];

/// Link the imports of every supported world.
pub fn add_to_linker(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    v0_2::add_to_linker(linker)?;
    v0_1::add_to_linker(linker)
}

/// A component linked against one supported world, ready to instantiate.
pub enum AgentPre {
    V0_1(v0_1::AgentPre<RunState>),
    V0_2(v0_2::AgentPre<RunState>),
}

impl AgentPre {
    /// Link-check `component` against each world, newest first.
    pub fn new(linker: &Linker<RunState>, component: &Component) -> Result<Self, String> {
        let pre = linker.instantiate_pre(component).map_err(|e| format!("{e:#}"))?;
        // The exports' types tell the worlds apart (a 0.2 `run` takes messages
        // with parts). When none fits, the error says why each world refused:
        // the author knows which one they meant.
        let newest = match v0_2::AgentPre::new(pre.clone()) {
            Ok(pre) => return Ok(Self::V0_2(pre)),
            Err(e) => e,
        };
        v0_1::AgentPre::new(pre).map(Self::V0_1).map_err(|oldest| {
            format!("fits no supported world: {}: {newest:#}; {}: {oldest:#}", v0_2::WORLD, v0_1::WORLD)
        })
    }

    /// The world this component was built against.
    pub fn world(&self) -> &'static str {
        match self {
            Self::V0_1(_) => v0_1::WORLD,
            Self::V0_2(_) => v0_2::WORLD,
        }
    }

    /// The engine the component was compiled for.
    pub fn engine(&self) -> &wasmtime::Engine {
        match self {
            Self::V0_1(pre) => pre.engine(),
            Self::V0_2(pre) => pre.engine(),
        }
    }

    /// Instantiate in `store` and call `info()`.
    pub async fn info(&self, store: &mut Store<RunState>) -> wasmtime::Result<AgentInfo> {
        match self {
            Self::V0_1(pre) => {
                let agent = pre.instantiate_async(&mut *store).await?;
                Ok(agent.call_info(store).await?.into())
            }
            Self::V0_2(pre) => {
                let agent = pre.instantiate_async(&mut *store).await?;
                Ok(agent.call_info(store).await?.into())
            }
        }
    }

    /// Instantiate in `store` and call `run(req)`.
    pub async fn run(&self, store: &mut Store<RunState>, req: RunRequest) -> wasmtime::Result<Result<(), AgentError>> {
        match self {
            Self::V0_1(pre) => {
                let agent = pre.instantiate_async(&mut *store).await?;
                let req = req.into();
                Ok(agent.call_run(store, &req).await?.map_err(Into::into))
            }
            Self::V0_2(pre) => {
                let agent = pre.instantiate_async(&mut *store).await?;
                let req = req.into();
                Ok(agent.call_run(store, &req).await?.map_err(Into::into))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `WORLDS` is what `--version` and load errors name: each entry must be
    /// the package its bindings were generated from.
    #[test]
    fn each_world_name_is_the_package_of_its_wit_file() {
        let package = |wit: &str| {
            let line = wit.lines().find_map(|l| l.strip_prefix("package ")).expect("a package line");
            line.trim_end_matches(';').to_string()
        };
        assert_eq!(v0_1::WORLD, package(include_str!("../../../../wit/agent.wit")));
        assert_eq!(v0_2::WORLD, package(include_str!("../../../../wit/v0.2/agent.wit")));
    }
}
