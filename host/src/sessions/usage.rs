//! The usage ledger: one row per run and model (`usage::UsageRow`), written
//! in batches after runs end, summed by agent, token, model or day. The
//! PostgreSQL table is step 8 of `db/migrations.rs`; SQLite's is
//! [`SQLITE_MIGRATION`]. Rows outlive sessions: spending is not undone by a reset.

use rusqlite::{Connection, params};

use super::store::StoreError;
use crate::db::Postgres;
use crate::usage::{BudgetSlot, Charge, Cost, GroupBy, RunUsage, Tokens, UsageQuery, UsageRow, UsageTotals};

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

pub(super) fn sqlite_record(conn: &mut Connection, rows: &[UsageRow]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(&INSERT.replace('$', "?"))?;
        for r in rows {
            let [a, b, c, d, e, f, g] = figures(&r.usage);
            insert.execute(params![r.run_id, r.model, r.at_ms, r.agent, r.principal, a, b, c, d, e, f, g])?;
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

/// Budget counters: one row per budget and window. A reservation is taken
/// only while what was spent plus what is reserved stays below each limit
/// (one conditional UPDATE, so concurrent instances cannot both pass the
/// last place); settling gives the reservation back and adds what was spent.
const BUDGET_ROW: &str = "INSERT INTO budget_counters (budget, window_start) VALUES ($1, $2) ON CONFLICT DO NOTHING";
const RESERVE: &str = "UPDATE budget_counters \
     SET reserved_tokens = reserved_tokens + $3, reserved_picos = reserved_picos + $4 \
     WHERE budget = $1 AND window_start = $2 \
       AND (CAST($5 AS BIGINT) < 0 OR spent_tokens + reserved_tokens < $5) \
       AND (CAST($6 AS BIGINT) < 0 OR spent_picos + reserved_picos < $6)";
const SETTLE: &str = "UPDATE budget_counters \
     SET reserved_tokens = GREATEST(reserved_tokens - $3, 0), reserved_picos = GREATEST(reserved_picos - $4, 0), \
         spent_tokens = spent_tokens + $5, spent_picos = spent_picos + $6 \
     WHERE budget = $1 AND window_start = $2";

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A limit as a parameter: -1 for none.
fn limit(n: Option<u64>) -> i64 {
    n.map_or(-1, signed)
}

fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?").replace("GREATEST(", "MAX(")
}

pub(super) fn sqlite_reserve(conn: &mut Connection, slot: &BudgetSlot, charge: &Charge) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    tx.execute(&sqlite_sql(BUDGET_ROW), params![slot.budget, slot.window_start])?;
    let taken = tx.execute(
        &sqlite_sql(RESERVE),
        params![
            slot.budget,
            slot.window_start,
            signed(charge.tokens),
            signed(charge.cost.picos()),
            limit(slot.max_tokens),
            limit(slot.max_cost.map(Cost::picos))
        ],
    )?;
    tx.commit()?;
    Ok(taken == 1)
}

pub(super) fn sqlite_settle(
    conn: &Connection,
    slot: &BudgetSlot,
    reserved: &Charge,
    spent: &Charge,
) -> rusqlite::Result<()> {
    conn.execute(
        &sqlite_sql(SETTLE),
        params![
            slot.budget,
            slot.window_start,
            signed(reserved.tokens),
            signed(reserved.cost.picos()),
            signed(spent.tokens),
            signed(spent.cost.picos())
        ],
    )?;
    Ok(())
}

pub(super) async fn postgres_reserve(pg: &Postgres, slot: &BudgetSlot, charge: &Charge) -> Result<bool, StoreError> {
    let client = pg.client().await?;
    client.execute(BUDGET_ROW, &[&slot.budget, &slot.window_start]).await.map_err(pg_error)?;
    let (tokens, picos) = (signed(charge.tokens), signed(charge.cost.picos()));
    let (max_tokens, max_picos) = (limit(slot.max_tokens), limit(slot.max_cost.map(Cost::picos)));
    let taken = client
        .execute(RESERVE, &[&slot.budget, &slot.window_start, &tokens, &picos, &max_tokens, &max_picos])
        .await
        .map_err(pg_error)?;
    Ok(taken == 1)
}

pub(super) async fn postgres_settle(
    pg: &Postgres,
    slot: &BudgetSlot,
    reserved: &Charge,
    spent: &Charge,
) -> Result<(), StoreError> {
    let client = pg.client().await?;
    let figures =
        [signed(reserved.tokens), signed(reserved.cost.picos()), signed(spent.tokens), signed(spent.cost.picos())];
    client
        .execute(SETTLE, &[&slot.budget, &slot.window_start, &figures[0], &figures[1], &figures[2], &figures[3]])
        .await
        .map_err(pg_error)?;
    Ok(())
}

const COUNTERS: &str = "SELECT spent_tokens, spent_picos, reserved_tokens, reserved_picos FROM budget_counters \
     WHERE budget = $1 AND window_start = $2";

/// (spent, reserved) from a counter row; none yet is nothing spent.
fn counters(n: Option<[i64; 4]>) -> (Charge, Charge) {
    let [st, sp, rt, rp] = n.unwrap_or_default().map(|v| v.max(0) as u64);
    (Charge { tokens: st, cost: Cost::from_picos(sp) }, Charge { tokens: rt, cost: Cost::from_picos(rp) })
}

pub(super) fn sqlite_counters(conn: &Connection, slot: &BudgetSlot) -> rusqlite::Result<(Charge, Charge)> {
    use rusqlite::OptionalExtension;
    let row = conn
        .query_row(&sqlite_sql(COUNTERS), params![slot.budget, slot.window_start], |r| {
            Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?])
        })
        .optional()?;
    Ok(counters(row))
}

pub(super) async fn postgres_counters(pg: &Postgres, slot: &BudgetSlot) -> Result<(Charge, Charge), StoreError> {
    let client = pg.client().await?;
    let row = client.query_opt(COUNTERS, &[&slot.budget, &slot.window_start]).await.map_err(pg_error)?;
    Ok(counters(row.map(|r| [r.get(0), r.get(1), r.get(2), r.get(3)])))
}

fn pg_error(e: tokio_postgres::Error) -> StoreError {
    crate::db::DbError::from(e).into()
}
