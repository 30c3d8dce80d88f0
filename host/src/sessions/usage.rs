//! The usage ledger: one row per run and model (`usage::UsageRow`), written
//! in batches after runs end, summed by agent, token, model or day. The
//! PostgreSQL table is step 8 of `db/migrations.rs`; SQLite's is
//! [`SQLITE_MIGRATION`]. Rows outlive sessions: spending is not undone by a reset.

use rusqlite::{Connection, params};

use super::store::StoreError;
use crate::db::Postgres;
use crate::usage::{BudgetSlot, Charge, Cost, GroupBy, Hold, RunUsage, Tokens, UsageQuery, UsageRow, UsageTotals};

/// The SQLite schema step (appended to `sqlite.rs`'s migrations).
pub(super) const SQLITE_MIGRATION: &str = "CREATE TABLE usage (
        run_id TEXT NOT NULL,
        model TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        agent_id TEXT NOT NULL,
        principal TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_input_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        cost_picos INTEGER NOT NULL,
        llm_calls INTEGER NOT NULL,
        unmetered_calls INTEGER NOT NULL,
        PRIMARY KEY (run_id, model)
     );
     CREATE INDEX usage_by_time ON usage (at_ms);
     CREATE TABLE budget_counters (
        budget TEXT NOT NULL,
        window_start INTEGER NOT NULL,
        spent_tokens INTEGER NOT NULL DEFAULT 0,
        spent_picos INTEGER NOT NULL DEFAULT 0,
        reserved_tokens INTEGER NOT NULL DEFAULT 0,
        reserved_picos INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (budget, window_start)
     );";

const INSERT: &str = "INSERT INTO usage (run_id, model, at_ms, agent_id, principal, input_tokens, output_tokens, \
     cached_input_tokens, reasoning_tokens, cost_picos, llm_calls, unmetered_calls) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (run_id, model) DO NOTHING";

/// The figures of a row as signed integers, as both databases keep them.
fn figures(u: &RunUsage) -> [i64; 7] {
    let i = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    [
        i(u.tokens.input),
        i(u.tokens.output),
        i(u.tokens.cached_input),
        i(u.tokens.reasoning),
        i(u.cost.picos()),
        i(u.llm_calls),
        i(u.unmetered_calls),
    ]
}

/// The SELECT summing rows by `query`, with `$n` (or `?n`) parameters:
/// 1 = from, 2 = to, 3 = principal or NULL, 4 = agent or NULL.
fn select(query: &UsageQuery, day: &str, cast: &str) -> String {
    let key = match query.group_by {
        GroupBy::Agent => "agent_id",
        GroupBy::Token => "principal",
        GroupBy::Model => "model",
        GroupBy::Day => day,
    };
    format!(
        "SELECT {key} AS k, SUM(input_tokens){cast}, SUM(output_tokens){cast}, SUM(cached_input_tokens){cast}, \
         SUM(reasoning_tokens){cast}, SUM(cost_picos){cast}, COUNT(DISTINCT run_id){cast}, SUM(llm_calls){cast}, \
         SUM(unmetered_calls){cast} FROM usage \
         WHERE at_ms >= $1 AND at_ms < $2 AND ($3 IS NULL OR principal = $3) AND ($4 IS NULL OR agent_id = $4) \
         GROUP BY k ORDER BY k"
    )
}

fn totals(key: String, n: [i64; 8]) -> UsageTotals {
    let u = |i: usize| n[i].max(0) as u64;
    UsageTotals {
        key,
        tokens: Tokens { input: u(0), output: u(1), cached_input: u(2), reasoning: u(3) },
        cost: Cost::from_picos(u(4)),
        runs: u(5),
        llm_calls: u(6),
        unmetered_calls: u(7),
    }
}

/// Write `rows` and add `spends` (settled budget spending, by window) to
/// the budget counters, in one transaction.
pub(super) fn sqlite_record(
    conn: &mut Connection,
    rows: &[UsageRow],
    spends: &[((String, i64), [i64; 2])],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(&INSERT.replace('$', "?"))?;
        for r in rows {
            let [a, b, c, d, e, f, g] = figures(&r.usage);
            insert.execute(params![r.run_id, r.model, r.at_ms, r.agent, r.principal, a, b, c, d, e, f, g])?;
        }
        let mut row = tx.prepare_cached(&sqlite_sql(BUDGET_ROW))?;
        let mut spend = tx.prepare_cached(&sqlite_sql(SPEND))?;
        for ((budget, window_start), [tokens, picos]) in spends {
            row.execute(params![budget, window_start])?;
            spend.execute(params![budget, window_start, tokens, picos])?;
        }
    }
    tx.commit()
}

pub(super) fn sqlite_totals(conn: &Connection, query: &UsageQuery) -> rusqlite::Result<Vec<UsageTotals>> {
    let day = "strftime('%Y-%m-%d', at_ms / 1000, 'unixepoch')";
    let sql = select(query, day, "").replace('$', "?");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![query.from_ms, query.to_ms, query.principal, query.agent], |r| {
        let mut n = [0i64; 8];
        for (i, slot) in n.iter_mut().enumerate() {
            *slot = r.get::<_, Option<i64>>(i + 1)?.unwrap_or(0);
        }
        Ok(totals(r.get(0)?, n))
    })?;
    rows.collect()
}

pub(super) async fn postgres_record(pg: &Postgres, rows: &[UsageRow]) -> Result<(), StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let insert = tx.prepare(INSERT).await.map_err(pg_error)?;
    for r in rows {
        let [a, b, c, d, e, f, g] = figures(&r.usage);
        tx.execute(&insert, &[&r.run_id, &r.model, &r.at_ms, &r.agent, &r.principal, &a, &b, &c, &d, &e, &f, &g])
            .await
            .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)
}

pub(super) async fn postgres_totals(pg: &Postgres, query: &UsageQuery) -> Result<Vec<UsageTotals>, StoreError> {
    let client = pg.client().await?;
    let day = "to_char(to_timestamp(at_ms / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')";
    let sql = select(query, day, "::BIGINT")
        .replace("$3 IS NULL", "$3::TEXT IS NULL")
        .replace("$4 IS NULL", "$4::TEXT IS NULL");
    let rows =
        client.query(&sql, &[&query.from_ms, &query.to_ms, &query.principal, &query.agent]).await.map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|r| {
            let mut n = [0i64; 8];
            for (i, slot) in n.iter_mut().enumerate() {
                *slot = r.get::<_, Option<i64>>(i + 1).unwrap_or(0);
            }
            totals(r.get(0), n)
        })
        .collect())
}

/// Budget counters: one row per budget and window with what was spent, and
/// (on PostgreSQL) one hold per run in flight with what it reserved until it
/// settles or expires (the run's deadline plus a margin: an instance that
/// died mid-run never settles). A reservation is taken only while what was
/// spent plus the live holds stays below each limit, under the counter row's
/// lock, so concurrent instances cannot both pass the last place. SQLite keeps
/// its holds in memory instead (`sqlite/budgets.rs`: one process owns the
/// file). The `reserved_*` columns of `budget_counters` are no longer used.
const BUDGET_ROW: &str = "INSERT INTO budget_counters (budget, window_start) VALUES ($1, $2) ON CONFLICT DO NOTHING";
const SPENT: &str = "SELECT spent_tokens, spent_picos FROM budget_counters WHERE budget = $1 AND window_start = $2";
const EXPIRE: &str = "DELETE FROM budget_holds WHERE budget = $1 AND window_start = $2 AND expires_at <= $3";
const HELD: &str = "SELECT CAST(COALESCE(SUM(tokens), 0) AS BIGINT), CAST(COALESCE(SUM(picos), 0) AS BIGINT) \
     FROM budget_holds WHERE budget = $1 AND window_start = $2 AND expires_at > $3";
/// The window's row lock: it orders the reservations of one window across instances.
const LOCK: &str = "SELECT 1 FROM budget_counters WHERE budget = $1 AND window_start = $2 FOR UPDATE";
/// Hold $4 tokens and $5 picos for run $3 if what was spent plus the live
/// holds (at $7) is below the limits $8 and $9 (NULL: none); a row if taken.
const TAKE: &str = "INSERT INTO budget_holds (budget, window_start, run_id, tokens, picos, expires_at) \
     SELECT $1::TEXT, $2::BIGINT, $3::TEXT, $4::BIGINT, $5::BIGINT, $6::BIGINT FROM budget_counters c, \
       (SELECT COALESCE(SUM(tokens), 0) AS tokens, COALESCE(SUM(picos), 0) AS picos FROM budget_holds \
        WHERE budget = $1 AND window_start = $2 AND expires_at > $7::BIGINT) held \
     WHERE c.budget = $1 AND c.window_start = $2 \
       AND ($8::BIGINT IS NULL OR c.spent_tokens + held.tokens < $8) \
       AND ($9::BIGINT IS NULL OR c.spent_picos + held.picos < $9)";
const RELEASE: &str = "DELETE FROM budget_holds WHERE budget = $1 AND window_start = $2 AND run_id = $3";
const SPEND: &str = "UPDATE budget_counters SET spent_tokens = spent_tokens + $3, spent_picos = spent_picos + $4 \
     WHERE budget = $1 AND window_start = $2";

/// The holds table, SQLite step 11 (PostgreSQL's step 11 in `db/migrations.rs` is the same
/// text: `db` stays below `sessions`); SQLite's INTEGER is 64-bit.
pub(crate) const HOLDS_MIGRATION: &str = "CREATE TABLE budget_holds (
        budget TEXT NOT NULL,
        window_start BIGINT NOT NULL,
        run_id TEXT NOT NULL,
        tokens BIGINT NOT NULL,
        picos BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (budget, window_start, run_id)
     );";

pub(super) fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Whether `spent` plus `held` leaves room under `slot`'s limits.
pub(super) fn room(slot: &BudgetSlot, spent: [i64; 2], held: [i64; 2]) -> bool {
    let under = |used: i64, max: Option<u64>| max.is_none_or(|max| used < signed(max));
    under(spent[0].saturating_add(held[0]), slot.max_tokens)
        && under(spent[1].saturating_add(held[1]), slot.max_cost.map(Cost::picos))
}

pub(super) fn log_expired(slot: &BudgetSlot, expired: u64) {
    if expired > 0 {
        tracing::warn!(
            budget = %slot.budget, expired,
            "budget reservations of runs that never settled stopped counting (an instance stopped mid-run)"
        );
    }
}

fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

pub(super) async fn postgres_reserve(
    pg: &Postgres,
    slot: &BudgetSlot,
    hold: &Hold,
    now: i64,
) -> Result<bool, StoreError> {
    let client = pg.client().await?;
    let (row, lock, expire, take) = tokio::try_join!(
        client.prepare_cached(BUDGET_ROW),
        client.prepare_cached(LOCK),
        client.prepare_cached(EXPIRE),
        client.prepare_cached(TAKE),
    )
    .map_err(pg_error)?;
    let (tokens, picos) = (signed(hold.charge.tokens), signed(hold.charge.cost.picos()));
    let (max_tokens, max_picos) = (slot.max_tokens.map(signed), slot.max_cost.map(|c| signed(c.picos())));
    let key: [Param; 2] = [&slot.budget, &slot.window_start];
    let expiring: [Param; 3] = [&slot.budget, &slot.window_start, &now];
    let taking: [Param; 9] = [
        &slot.budget,
        &slot.window_start,
        &hold.run_id,
        &tokens,
        &picos,
        &hold.expires_at,
        &now,
        &max_tokens,
        &max_picos,
    ];
    // Sent together, one round trip; the server runs them in order, and
    // each statement after the row's lock reads what committed before it.
    let (_, _, _, expired, taken, _) = tokio::try_join!(
        client.batch_execute("BEGIN"),
        client.execute(&row, &key),
        client.execute(&lock, &key),
        client.execute(&expire, &expiring),
        client.execute(&take, &taking),
        client.batch_execute("COMMIT"),
    )
    .map_err(pg_error)?;
    log_expired(slot, expired);
    Ok(taken == 1)
}

pub(super) async fn postgres_settle(
    pg: &Postgres,
    slot: &BudgetSlot,
    run_id: &str,
    spent: &Charge,
) -> Result<(), StoreError> {
    let client = pg.client().await?;
    let (spend, release) =
        tokio::try_join!(client.prepare_cached(SPEND), client.prepare_cached(RELEASE)).map_err(pg_error)?;
    let (tokens, picos) = (signed(spent.tokens), signed(spent.cost.picos()));
    let spending: [Param; 4] = [&slot.budget, &slot.window_start, &tokens, &picos];
    let releasing: [Param; 3] = [&slot.budget, &slot.window_start, &run_id];
    // One round trip; the counter row is locked before the hold, in the
    // order a reservation locks them, so the two never wait on each other.
    tokio::try_join!(
        client.batch_execute("BEGIN"),
        client.execute(&spend, &spending),
        client.execute(&release, &releasing),
        client.batch_execute("COMMIT"),
    )
    .map_err(pg_error)?;
    Ok(())
}

/// (spent, reserved) from the counter row and the live holds; none yet is nothing.
pub(super) fn counters(spent: Option<[i64; 2]>, held: [i64; 2]) -> (Charge, Charge) {
    let [st, sp] = spent.unwrap_or_default().map(|v| v.max(0) as u64);
    let [rt, rp] = held.map(|v| v.max(0) as u64);
    (Charge { tokens: st, cost: Cost::from_picos(sp) }, Charge { tokens: rt, cost: Cost::from_picos(rp) })
}

/// What `slot`'s window has spent, as the file has it (nothing yet is zero).
pub(super) fn sqlite_spent(conn: &Connection, slot: &BudgetSlot) -> rusqlite::Result<[i64; 2]> {
    use rusqlite::OptionalExtension;
    let key = params![slot.budget, slot.window_start];
    let spent = conn.query_row(&sqlite_sql(SPENT), key, |r| Ok([r.get(0)?, r.get(1)?])).optional()?;
    Ok(spent.unwrap_or_default())
}

pub(super) async fn postgres_counters(
    pg: &Postgres,
    slot: &BudgetSlot,
    now: i64,
) -> Result<(Charge, Charge), StoreError> {
    let client = pg.client().await?;
    let spent = client.query_opt(SPENT, &[&slot.budget, &slot.window_start]).await.map_err(pg_error)?;
    let held = client.query_one(HELD, &[&slot.budget, &slot.window_start, &now]).await.map_err(pg_error)?;
    Ok(counters(spent.map(|r| [r.get(0), r.get(1)]), [held.get(0), held.get(1)]))
}

fn pg_error(e: tokio_postgres::Error) -> StoreError {
    crate::db::DbError::from(e).into()
}
