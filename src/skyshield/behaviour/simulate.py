"""A synthetic city's call and SMS traffic with ground truth (no public raw CDR corpus exists).

Vectorised with numpy; writes Parquet partitioned by day (``calls/day=YYYY-MM-DD/part.parquet``,
``messages/day=.../part.parquet``), ``labels.parquet`` (one row per number: kind, is_fraud,
activation time, device, ring, the number it replaced) and ``attacks.parquet`` (SMS-bombing attacks).
The populations and their parameters, and where each assumption comes from, are in docs/behaviour.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

START = datetime(2026, 1, 5)  # a Monday
DAY = 86_400

#: Share of ordinary calls starting in each hour of the day (a two-peak daytime rhythm, quiet nights).
HOUR_WEIGHTS = np.array([0.6, 0.3, 0.2, 0.15, 0.15, 0.3, 1.0, 2.5, 4.5, 6.0, 6.5, 6.5,
                         5.5, 5.5, 6.0, 6.5, 6.5, 6.5, 6.5, 6.5, 6.0, 5.0, 3.0, 1.5])
HOUR_WEIGHTS = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()
WORK_HOURS = np.zeros(24)
WORK_HOURS[9:12] = 1.0
WORK_HOURS[13:21] = 1.0
WORK_HOURS /= WORK_HOURS.sum()

KINDS = ("ordinary", "business", "website", "telemarketer", "courier", "fraud", "simbox")


@dataclass
class SimConfig:
    subscribers: int = 2000
    days: int = 2
    seed: int = 0
    calls_per_day: float = 4.0  # mean outgoing calls per ordinary subscriber per day
    sms_per_day: float = 1.0  # mean personal SMS per ordinary subscriber per day
    contacts: int = 20  # size of each subscriber's social circle
    community: int = 200  # people in one neighbourhood / workplace (contacts are drawn from it)
    fraud_rings: int | None = None  # default: one per 2,000 subscribers, at least 1
    ring_slots: int = 3  # numbers a ring has calling at once
    fraud_calls_per_day: float = 220.0
    telemarketers: int | None = None  # default: one per 1,000 subscribers, at least 2
    simboxes: int | None = None  # default: one per 5,000 subscribers, at least 1
    simbox_sims: int = 16
    bombing_per_day: int | None = None  # default: one per 2,000 subscribers per day, at least 1
    websites: int = 200  # sites that send one-time codes (and can be abused for bombing)
    businesses: int | None = None  # notification senders; default: one per 2,000 subscribers, at least 3

    def derived(self) -> dict[str, int]:
        n = self.subscribers
        return {
            "fraud_rings": self.fraud_rings if self.fraud_rings is not None else max(1, n // 2000),
            "telemarketers": self.telemarketers if self.telemarketers is not None else max(2, n // 1000),
            "simboxes": self.simboxes if self.simboxes is not None else max(1, n // 5000),
            "bombing_per_day": self.bombing_per_day if self.bombing_per_day is not None else max(1, n // 2000),
            "businesses": self.businesses if self.businesses is not None else max(3, n // 2000),
        }


@dataclass
class _Parts:
    """Columns gathered per population before one concatenation (numbers are int64 ids)."""

    cols: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, **arrays: np.ndarray) -> None:
        n = len(next(iter(arrays.values())))
        for k, v in arrays.items():
            v = np.asarray(v)
            if v.ndim == 0:
                v = np.full(n, v)
            self.cols.setdefault(k, []).append(v)

    def concat(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.cols.items()}


def _times(rng: np.random.Generator, days: np.ndarray, hour_weights: np.ndarray) -> np.ndarray:
    hours = rng.choice(24, size=len(days), p=hour_weights)
    return days.astype(np.int64) * DAY + hours * 3600 + rng.integers(0, 3600, len(days))


def simulate(cfg: SimConfig) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Return ``(calls, messages, labels, attacks)`` frames for ``cfg``."""
    rng = np.random.default_rng(cfg.seed)
    d = cfg.derived()
    n, days = cfg.subscribers, cfg.days
    span = days * DAY
    calls, msgs = _Parts(), _Parts()
    # Number ids: subscribers 0..n-1, then every other party gets the next free id.
    next_id = n
    label_rows = _Parts()

    def new_ids(k: int) -> np.ndarray:
        nonlocal next_id
        ids = np.arange(next_id, next_id + k, dtype=np.int64)
        next_id += k
        return ids

    # --- ordinary subscribers: a social graph of neighbourhoods, a daily rhythm, some mobility ----------
    subs = np.arange(n, dtype=np.int64)
    community = subs // cfg.community
    n_comm = int(community.max()) + 1
    comm_start = np.minimum(community * cfg.community, n - 1)
    comm_size = np.minimum(cfg.community, n - comm_start)
    contacts = (comm_start[:, None] + rng.integers(0, 1 << 30, (n, cfg.contacts)) % comm_size[:, None]).astype(np.int64)
    # a few contacts anywhere in the city (family elsewhere, colleagues)
    far = rng.random((n, cfg.contacts)) < 0.15
    contacts[far] = rng.integers(0, n, far.sum())
    sub_device = subs + 10_000_000
    sub_cell = community * 3 + rng.integers(0, 3, n)
    activity = rng.lognormal(0, 0.6, n)
    activity *= cfg.calls_per_day / activity.mean()
    activated = -rng.integers(30, 3650, n) * DAY  # relative to START, seconds
    fresh = rng.random(n) < 0.01  # ordinary people get new numbers too
    activated[fresh] = rng.integers(-20 * DAY, span, fresh.sum())
    label_rows.add(number=subs, kind=np.full(n, "ordinary"), is_fraud=np.zeros(n, bool), activated=activated,
                   device=sub_device, ring=np.full(n, -1), predecessor=np.full(n, -1), blocked_at=np.full(n, -1))

    per_day = rng.poisson(np.repeat(activity, days))
    caller = np.repeat(np.repeat(subs, days), per_day)
    day_of = np.repeat(np.tile(np.arange(days), n), per_day)
    t = _times(rng, day_of, HOUR_WEIGHTS)
    # Favourite contacts get most calls (a Zipf-like pick over the circle).
    pick = np.minimum(rng.zipf(1.6, len(caller)) - 1, cfg.contacts - 1)
    callee = contacts[caller, pick]
    stranger = rng.random(len(caller)) < 0.08
    callee[stranger] = rng.integers(0, n, stranger.sum())
    callee = np.where(callee == caller, (callee + 1) % n, callee)
    # the callee's activation can be later than the call start: skip such calls (number not yet in service)
    ok = (activated[caller] <= t) & (activated[callee] <= t)
    caller, callee, t = caller[ok], callee[ok], t[ok]
    k = len(caller)
    answered = rng.random(k) < 0.82
    dur = np.where(answered, np.round(rng.lognormal(np.log(40), 1.1, k)), 0.0)
    moving = rng.random(k) < 0.35
    cell = np.where(moving, rng.integers(0, n_comm * 3, k), sub_cell[caller])
    calls.add(caller=caller, callee=callee, t=t, duration=dur, answered=answered, cell=cell,
              device=sub_device[caller])

    # personal SMS among contacts
    m_per = rng.poisson(cfg.sms_per_day, n * days)
    s_from = np.repeat(np.repeat(subs, days), m_per)
    s_day = np.repeat(np.tile(np.arange(days), n), m_per)
    st = _times(rng, s_day, HOUR_WEIGHTS)
    s_to = contacts[s_from, rng.integers(0, cfg.contacts, len(s_from))]
    ok = activated[s_from] <= st
    msgs.add(sender=s_from[ok], recipient=s_to[ok], t=st[ok], template=np.full(ok.sum(), -1),
             is_code=np.zeros(ok.sum(), bool), code_used=np.zeros(ok.sum(), bool), signature=np.full(ok.sum(), -1))

    # --- businesses: notifications with a signature and a template; websites: one-time codes -----------
    biz = new_ids(d["businesses"])
    label_rows.add(number=biz, kind=np.full(len(biz), "business"), is_fraud=np.zeros(len(biz), bool),
                   activated=np.full(len(biz), -2000 * DAY), device=np.full(len(biz), -1),
                   ring=np.full(len(biz), -1), predecessor=np.full(len(biz), -1), blocked_at=np.full(len(biz), -1))
    k = int(n * days * 0.3)
    b = rng.integers(0, len(biz), k)
    bt = rng.integers(0, span, k)
    msgs.add(sender=biz[b], recipient=rng.integers(0, n, k), t=bt, template=1000 + b * 4 + rng.integers(0, 4, k),
             is_code=np.zeros(k, bool), code_used=np.zeros(k, bool), signature=b)
    sites = new_ids(cfg.websites)
    label_rows.add(number=sites, kind=np.full(len(sites), "website"), is_fraud=np.zeros(len(sites), bool),
                   activated=np.full(len(sites), -2000 * DAY), device=np.full(len(sites), -1),
                   ring=np.full(len(sites), -1), predecessor=np.full(len(sites), -1),
                   blocked_at=np.full(len(sites), -1))
    k = int(n * days * 0.4)
    popularity = rng.zipf(1.3, cfg.websites).astype(float)
    popularity /= popularity.sum()
    w = rng.choice(cfg.websites, k, p=popularity)
    msgs.add(sender=sites[w], recipient=rng.integers(0, n, k), t=_times(rng, rng.integers(0, days, k), HOUR_WEIGHTS),
             template=5000 + w, is_code=np.ones(k, bool), code_used=rng.random(k) < 0.85, signature=10_000 + w)

    # --- telemarketers: mature numbers, many strangers in working hours, moderate answer rate ------------
    tm = new_ids(d["telemarketers"])
    label_rows.add(number=tm, kind=np.full(len(tm), "telemarketer"), is_fraud=np.zeros(len(tm), bool),
                   activated=-rng.integers(100, 2000, len(tm)) * DAY, device=tm + 20_000_000,
                   ring=np.full(len(tm), -1), predecessor=np.full(len(tm), -1), blocked_at=np.full(len(tm), -1))
    per = rng.poisson(120, len(tm) * days)
    c = np.repeat(np.repeat(tm, days), per)
    t = _times(rng, np.repeat(np.tile(np.arange(days), len(tm)), per), WORK_HOURS)
    k = len(c)
    ans = rng.random(k) < 0.45
    calls.add(caller=c, callee=rng.integers(0, n, k), t=t, duration=np.where(ans, np.round(rng.lognormal(
        np.log(45), 0.8, k)), 0.0), answered=ans, cell=np.full(k, 7), device=c + 20_000_000)

    # --- couriers and delivery drivers: legitimate, yet many strangers and short calls; people call back ---
    cr = new_ids(max(2, n // 500))
    label_rows.add(number=cr, kind=np.full(len(cr), "courier"), is_fraud=np.zeros(len(cr), bool),
                   activated=-rng.integers(60, 3000, len(cr)) * DAY, device=cr + 20_000_000,
                   ring=np.full(len(cr), -1), predecessor=np.full(len(cr), -1), blocked_at=np.full(len(cr), -1))
    per = rng.poisson(50, len(cr) * days)
    c = np.repeat(np.repeat(cr, days), per)
    t = _times(rng, np.repeat(np.tile(np.arange(days), len(cr)), per), WORK_HOURS)
    k = len(c)
    ans = rng.random(k) < 0.7
    to = rng.integers(0, n, k)
    calls.add(caller=c, callee=to, t=t, duration=np.where(ans, np.round(rng.lognormal(np.log(30), 0.6, k)), 0.0),
              answered=ans, cell=rng.integers(0, n_comm * 3, k), device=c + 20_000_000)
    back = (rng.random(k) < 0.15) & (t < span - 7200)
    calls.add(caller=to[back], callee=c[back], t=t[back] + rng.integers(60, 7200, back.sum()),
              duration=np.round(rng.lognormal(np.log(40), 0.6, back.sum())), answered=np.ones(back.sum(), bool),
              cell=sub_cell[to[back]], device=sub_device[to[back]])

    # --- fraud rings: bursts of short calls to a target list; blocked numbers are replaced ---------------
    attacks_rows: list[tuple[int, int, int, int]] = []
    for ring in range(d["fraud_rings"]):
        targets = rng.choice(n, size=min(n, 600), replace=False)
        cell_of_ring = rng.integers(0, n_comm * 3)
        template = 900_000 + ring
        # rings differ: some dial hard, some go low and slow
        intensity = cfg.fraud_calls_per_day * float(rng.lognormal(-0.2, 0.6))
        for slot in range(cfg.ring_slots):
            # bursts: sessions of 20-60 calls, 15-90 s apart, a few sessions per day
            times: list[np.ndarray] = []
            for day in range(days):
                for _ in range(rng.poisson(intensity / 40) + 1):
                    start = day * DAY + rng.choice(24, p=WORK_HOURS) * 3600 + rng.integers(0, 3600)
                    gaps = rng.integers(15, 90, rng.integers(20, 60))
                    times.append(start + np.cumsum(gaps))
            t = np.sort(np.concatenate(times))
            t = t[t < span]
            budgets = rng.integers(80, 300, 200)  # calls until the carrier blocks the number
            which = np.searchsorted(np.cumsum(budgets), np.arange(len(t)), side="right")
            n_nums = int(which.max()) + 1 if len(t) else 0
            if n_nums == 0:
                continue
            nums = new_ids(n_nums)
            first = np.array([t[which == j].min() for j in range(n_nums)])
            last = np.array([t[which == j].max() for j in range(n_nums)])
            same_device = rng.random(n_nums) < 0.6
            dev_ids = np.cumsum(~same_device) + 30_000_000 + ring * 1000 + slot * 100
            act = first - rng.integers(3600, 5 * DAY, n_nums)
            label_rows.add(number=nums, kind=np.full(n_nums, "fraud"), is_fraud=np.ones(n_nums, bool), activated=act,
                           device=dev_ids, ring=np.full(n_nums, ring),
                           predecessor=np.concatenate([[-1], nums[:-1]]),
                           blocked_at=np.where(np.arange(n_nums) < n_nums - 1, last, -1))
            k = len(t)
            callee = targets[rng.integers(0, len(targets), k)]
            ans = rng.random(k) < 0.22
            # a replacement number first calls back victims its blocked predecessor reached
            for j in range(1, n_nums):
                prev = callee[(which == j - 1) & ans]
                mine = np.flatnonzero(which == j)
                back = mine[rng.random(len(mine)) < 0.5]
                if len(prev) and len(back):
                    callee[back] = prev[rng.integers(0, len(prev), len(back))]
            calls.add(caller=nums[which], callee=callee, t=t,
                      duration=np.where(ans, np.round(rng.lognormal(np.log(40), 1.0, k)), 0.0), answered=ans,
                      cell=np.full(k, cell_of_ring), device=dev_ids[which])
            # a few victims call the number back (Sichuan: fraud numbers' calls are ~97% outgoing)
            back = np.flatnonzero(ans & (rng.random(k) < 0.1) & (t < span - 4 * 3600))
            calls.add(caller=callee[back], callee=nums[which][back], t=t[back] + rng.integers(300, 4 * 3600, len(back)),
                      duration=np.round(rng.lognormal(np.log(60), 0.8, len(back))), answered=np.ones(len(back), bool),
                      cell=sub_cell[callee[back]], device=sub_device[callee[back]])
            # follow-up SMS with the ring's template to some answered victims
            sel = ans & (rng.random(k) < 0.5)
            msgs.add(sender=nums[which][sel], recipient=callee[sel], t=t[sel] + 120,
                     template=np.full(sel.sum(), template), is_code=np.zeros(sel.sum(), bool),
                     code_used=np.zeros(sel.sum(), bool), signature=np.full(sel.sum(), -1))

    # --- SIM-box gateways: one device, many SIMs, one cell, outgoing only -------------------------------
    for box in range(d["simboxes"]):
        sims = new_ids(cfg.simbox_sims)
        device = 40_000_000 + box
        label_rows.add(number=sims, kind=np.full(len(sims), "simbox"), is_fraud=np.ones(len(sims), bool),
                       activated=-rng.integers(5, 60, len(sims)) * DAY, device=np.full(len(sims), device),
                       ring=np.full(len(sims), -1), predecessor=np.full(len(sims), -1),
                       blocked_at=np.full(len(sims), -1))
        per = rng.poisson(90, len(sims) * days)
        c = np.repeat(np.repeat(sims, days), per)
        t = _times(rng, np.repeat(np.tile(np.arange(days), len(sims)), per), HOUR_WEIGHTS)
        k = len(c)
        ans = rng.random(k) < 0.6
        calls.add(caller=c, callee=rng.integers(0, n, k), t=t, duration=np.where(ans, np.round(rng.lognormal(
            np.log(80), 0.9, k)), 0.0), answered=ans, cell=np.full(k, 999_000 + box), device=np.full(k, device))

    # --- SMS bombing: many websites' codes to one victim within minutes ----------------------------------
    for _ in range(d["bombing_per_day"] * days):
        victim = int(rng.integers(0, n))
        start = int(rng.integers(0, span - 3600))
        k = int(rng.integers(25, 80))
        w = rng.choice(cfg.websites, size=k, replace=True)
        t = start + np.sort(rng.integers(0, 600, k))
        msgs.add(sender=sites[w], recipient=np.full(k, victim), t=t, template=5000 + w, is_code=np.ones(k, bool),
                 code_used=np.zeros(k, bool), signature=10_000 + w)
        attacks_rows.append((victim, start, int(t.max()), k))

    labels = label_rows.concat()
    c, m = calls.concat(), msgs.concat()
    return _frames(c, m, labels, attacks_rows)


def _num_expr(name: str) -> pl.Expr:
    return (pl.lit("1") + (pl.col(name) + 3_800_000_000).cast(pl.String)).alias(name)


def _frames(c: dict[str, np.ndarray], m: dict[str, np.ndarray], labels: dict[str, np.ndarray],
            attacks: list[tuple[int, int, int, int]]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    start_us = int((START - datetime(1970, 1, 1)).total_seconds()) * 1_000_000
    ts = lambda name: (pl.col(name) * 1_000_000 + start_us).cast(pl.Datetime("us"))  # noqa: E731
    calls = pl.DataFrame(c).sort("t").select(
        _num_expr("caller"), _num_expr("callee"), ts("t").alias("start"),
        pl.col("duration").cast(pl.Float64), pl.col("answered"), pl.lit("out").alias("direction"),
        ("c" + pl.col("cell").cast(pl.String)).alias("cell"),
        pl.when(pl.col("device") >= 0).then("d" + pl.col("device").cast(pl.String)).alias("device"),
    )
    msgs = pl.DataFrame(m).sort("t").select(
        _num_expr("sender"), _num_expr("recipient"), ts("t").alias("time"),
        pl.when(pl.col("signature") >= 0).then("【s" + pl.col("signature").cast(pl.String) + "】").alias("signature"),
        pl.when(pl.col("template") >= 0).then("tpl" + pl.col("template").cast(pl.String)).alias("template"),
        pl.col("is_code"), pl.when(pl.col("is_code")).then(pl.col("code_used")).alias("code_used"),
    )
    lab = pl.DataFrame(labels).select(
        _num_expr("number"), "kind", "is_fraud", ts("activated").alias("activated"),
        pl.when(pl.col("device") >= 0).then("d" + pl.col("device").cast(pl.String)).alias("device"),
        pl.col("ring").cast(pl.Int32),
        pl.when(pl.col("predecessor") >= 0).then(_num_expr("predecessor")).alias("predecessor"),
        pl.when(pl.col("blocked_at") >= 0).then(ts("blocked_at")).alias("blocked_at"),
    )
    att = pl.DataFrame(attacks, schema=["victim", "start", "end", "messages"], orient="row").select(
        _num_expr("victim"), ts("start").alias("start"), ts("end").alias("end"), "messages")
    return calls, msgs, lab, att


def write(out: str | Path, calls: pl.DataFrame, messages: pl.DataFrame, labels: pl.DataFrame,
          attacks: pl.DataFrame) -> dict[str, int]:
    """Write the frames under ``out`` (Parquet partitioned by day) and return row counts."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if (out / "calls").exists() and any((out / "calls").iterdir()):
        raise ValueError(f"{out}: already holds a simulation (calls/); choose an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    for name, frame, col in (("calls", calls, "start"), ("messages", messages, "time")):
        day = frame[col].dt.date()
        for (value,), part in frame.with_columns(day.alias("_day")).group_by("_day", maintain_order=True):
            folder = out / name / f"day={value}"
            folder.mkdir(parents=True, exist_ok=True)
            part.drop("_day").write_parquet(folder / "part.parquet")
    labels.write_parquet(out / "labels.parquet")
    attacks.write_parquet(out / "attacks.parquet")
    return {"calls": calls.height, "messages": messages.height, "numbers": labels.height, "attacks": attacks.height}


def load(out: str | Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Read back what :func:`write` wrote."""
    out = Path(out)
    calls = pl.read_parquet(out / "calls" / "**" / "*.parquet", hive_partitioning=False)
    messages = pl.read_parquet(out / "messages" / "**" / "*.parquet", hive_partitioning=False)
    return calls.sort("start"), messages.sort("time"), pl.read_parquet(out / "labels.parquet"), pl.read_parquet(
        out / "attacks.parquet")
