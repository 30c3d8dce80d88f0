//! Instantiate + call of a trivial agent (echo, one word), against the same
//! work done natively: split the words and send them through the same kind of
//! channel. The ratio is the price of a fresh WebAssembly instance per run.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tokio::sync::mpsc;
use wasmclaw::chat::{AgentId, Event, Message, Role, RunRequest};
use wasmclaw::runtime::{AgentSettings, AgentSource, EngineLimits, RunLimits, Runtime};

fn request() -> RunRequest {
    let hello = Message::text(Role::User, "hello");
    RunRequest {
        run_id: "bench".into(),
        agent_id: "main".into(),
        session_key: "agent:main:bench".into(),
        messages: vec![hello],
        tools: vec![],
        user: None,
        params: "{}".into(),
        model: None,
    }
}

fn runs(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let runtime = Runtime::new(&EngineLimits::default(), None).unwrap();
    let bytes: std::sync::Arc<[u8]> = std::fs::read(env!("WASMCLAW_BENCH_ECHO")).unwrap().into();
    let settings = AgentSettings { limits: RunLimits::default(), ..AgentSettings::default() };
    let agent = rt
        .block_on(runtime.load(AgentId::parse("main").unwrap(), AgentSource::Shipped("echo".into()), bytes, settings))
        .unwrap();
    let req = request();
    let mut group = c.benchmark_group("run");
    group.bench_function("native (baseline)", |b| {
        b.to_async(&rt).iter(|| async {
            let (tx, mut rx) = mpsc::channel(32);
            let text = req.messages.iter().rev().find(|m| m.role == Role::User).unwrap().content.clone();
            for word in text.split_inclusive(' ') {
                tx.send(Event::Text(word.to_string())).await.unwrap();
            }
            drop(tx);
            while let Some(event) = rx.recv().await {
                black_box(event);
            }
        })
    });
    group.bench_function("wasm instantiate + call + drop", |b| {
        b.to_async(&rt).iter(|| async {
            let (tx, mut rx) = mpsc::channel(32);
            // The request is the run's to keep (it moves into the guest's types).
            let outcome = agent
                .run(
                    req.clone(),
                    wasmclaw::runtime::RunEvents::new(tx),
                    None,
                    wasmclaw::usage::Meter::new("bench"),
                    wasmclaw::tape::Tape::default(),
                )
                .await
                .unwrap();
            while let Some(event) = rx.recv().await {
                black_box(event);
            }
            black_box(outcome);
        })
    });
    group.finish();
}

criterion_group!(benches, runs);
criterion_main!(benches);
