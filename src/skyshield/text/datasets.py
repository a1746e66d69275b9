"""Readers for the public corpora in ``../shared/data`` and the mapping of their labels onto ours.

Every corpus labels things its own way (one calls all marketing "spam", another calls carrier
marketing "normal"), so each reader returns :class:`Record` rows that keep the dataset's *native*
label (for reporting in its own terms) next to the skyshield *class* it maps to. The mapping is the
table :data:`LABEL_MAP` below; the model card (``skyshield/models/CARD.md``) prints the same table.

A training class is ``"ham"``, ``"promotion"``, ``"fraud/<subtype>"`` or ``"illicit/<subtype>"``.
"ham" is split into personal / notification / verification at prediction time from the entities,
because no corpus labels that split.

:func:`pool` deduplicates across corpora (UCI and Mendeley share most texts) on a key that ignores
case, digits, spaces and punctuation, so a text and its near-copy always land in the same fold.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from skyshield.events import Category, FraudSubtype, IllicitSubtype

HAM = "ham"
PROMOTION = Category.PROMOTION.value

#: Every class the model can learn (the category head sees the part before "/").
CLASSES: list[str] = (
    [HAM, PROMOTION]
    + [f"fraud/{s.value}" for s in FraudSubtype]
    + [f"illicit/{s.value}" for s in IllicitSubtype]
)


def fraud(subtype: FraudSubtype) -> str:
    return f"fraud/{subtype.value}"


def illicit(subtype: IllicitSubtype) -> str:
    return f"illicit/{subtype.value}"


def split_class(cls: str) -> tuple[str, str | None]:
    """``"fraud/loan"`` -> ``("fraud", "loan")``; ``"ham"`` -> ``("ham", None)``."""
    category, _, subtype = cls.partition("/")
    return category, subtype or None


# --- weak re-labelling rules (documented in LABEL_MAP) ------------------------------------------

#: Chinese marketing cues: an opt-out instruction means the sender is marketing, whatever else it is.
ZH_MARKETING_CUE = re.compile(r"退订|回[Tt][Dd]?|拒收")
#: Wider Chinese marketing wording (offers, discounts, shop openings): Telecom_Fraud_Texts_5 calls most
#: of its "normal" class marketing of this kind, with or without an opt-out.
ZH_OFFER_CUE = re.compile(
    r"优惠|折起|[0-9一二三四五六七八九]\.?[0-9]?折|红包|抢购|特价|促销|会员日|限时|福利|大促|秒杀|满减|立减|免费领|"
    r"优惠券|惊喜|回馈|酬宾|热卖|抽奖|开业|钜惠|新品|加推|主营|光临|选购|团购|抢先|赠送|活动|欢迎(新老)?(顾客|客户|朋友)"
)
#: Premium-rate "you have won" texts in UCI spam are prize scams, not marketing.
EN_PRIZE_CUE = re.compile(r"\b(won|winner|prize|claim|awarded|guaranteed)\b", re.I)
#: Premium-rate adult chat lines in UCI spam.
EN_ADULT_CUE = re.compile(r"\b(xxx|sexy?|horny|porn|naughty)\b", re.I)
#: Illicit offers inside Chinese spam: fake invoices/certificates, gambling, porn.
ZH_ILLICIT_CUES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"代开|各类发票|增值税发票|普通发票|办证|刻章|假证|毕业证|文凭"),
     illicit(IllicitSubtype.FAKE_DOCUMENTS)),
    (re.compile(r"博彩|赌场|百家乐|娱乐城|彩金|荷官|六合彩|老虎机|投注|下注|时时彩"), illicit(IllicitSubtype.GAMBLING)),
    (re.compile(r"色情|约炮|援交|裸聊|一夜情|上门服务|特殊服务|成人视频"), illicit(IllicitSubtype.PORN)),
]
#: The 800k corpus masks every digit as "x"; turn masks back into digits so features match real text.
_X_MASK = re.compile(r"x{2,}|(?<![A-Za-z])x(?![A-Za-z])")


def unmask_digits(text: str) -> str:
    return _X_MASK.sub(lambda m: "0" * len(m.group()), text)


#: Telecom_Fraud_Texts_5 anonymised its texts with placeholders, differently per class (DIGIT, NAME,
#: PLACE, PHONE... only in "normal"; XX runs mostly in fraud). Real traffic has none, so a model would
#: learn the placeholders: digits-like ones become digits, name/place ones are dropped.
_TELECOM_PLACEHOLDER = re.compile(r"CELLPHONE|PHONE|HOTLINE|DIGIT|NAME|PLACE|X{2,}")


def _telecom_placeholder(m: re.Match[str]) -> str:
    word = m.group()
    if word in ("CELLPHONE", "PHONE"):
        return "00000000000"
    if word == "HOTLINE":
        return "00000"
    if word == "DIGIT":
        return "0"
    if word.startswith("X"):
        return "0" * len(word)
    return ""


def clean_telecom(text: str) -> str:
    return unmask_digits(_TELECOM_PLACEHOLDER.sub(_telecom_placeholder, text))


def zh_spam_class(text: str, default: str) -> str:
    for pattern, cls in ZH_ILLICIT_CUES:
        if pattern.search(text):
            return cls
    return default


def en_spam_class(text: str) -> str:
    if EN_ADULT_CUE.search(text):
        return illicit(IllicitSubtype.PORN)
    if EN_PRIZE_CUE.search(text):
        return fraud(FraudSubtype.PRIZE)
    return PROMOTION


#: dataset -> native label -> (skyshield class, how it is decided). Printed in the model card.
LABEL_MAP: dict[str, dict[str, tuple[str, str]]] = {
    "uci_sms_spam": {
        "ham": (HAM, "ham"),
        "spam": (PROMOTION, "promotion; prize wording (won/winner/prize/claim...) -> fraud/prize; adult chat "
                 "(sexy/xxx...) -> illicit/porn; a Mendeley 'smishing' label for the same text wins"),
    },
    "mendeley_smishing": {
        "ham": (HAM, "ham"),
        "spam": (PROMOTION, "promotion; prize and adult-chat wording as for UCI spam"),
        "smishing": (fraud(FraudSubtype.PHISHING_LINK), "fraud/phishing_link; prize wording -> fraud/prize"),
    },
    "telecom_fraud_texts_5": {
        "0": (HAM, "ham; texts with an opt-out cue (退订/回T/回TD/拒收) or offer wording (优惠, N折, 红包, 抢购, "
              "活动, 开业, 欢迎新老顾客...) -> promotion (the class is mostly carrier and shop marketing)"),
        "1": (fraud(FraudSubtype.AUTHORITY_IMPERSONATION), "fraud/authority_impersonation (冒充公检法)"),
        "2": (fraud(FraudSubtype.LOAN), "fraud/loan (贷款、代办信用卡)"),
        "3": (fraud(FraudSubtype.CUSTOMER_SERVICE_IMPERSONATION), "fraud/customer_service_impersonation (冒充客服)"),
        "4": (fraud(FraudSubtype.ACQUAINTANCE_IMPERSONATION), "fraud/acquaintance_impersonation (冒充领导熟人)"),
    },
    "zh_sms_800k": {
        "0": (HAM, "ham (includes web-text fragments)"),
        "1": (PROMOTION, "promotion (mostly marketing); illicit cues (代开/发票, 博彩/娱乐城, 色情...) -> illicit/*; "
              "a 6-class label for the same text wins"),
    },
    "zh_spam_6class": {
        "loan_fraud": (fraud(FraudSubtype.LOAN), "fraud/loan"),
        "used_car_promotion": (PROMOTION, "promotion"),
        "real_estate_promotion": (PROMOTION, "promotion"),
        "service_business_ads": (PROMOTION, "promotion; illicit cues -> illicit/* (fake invoices are sold as "
                                 "'services')"),
        "bank_impersonation_transfer_fraud": (fraud(FraudSubtype.OTHER), "fraud/other (a mixed bag: 'pay into "
                                              "this account' texts, bank-deduction impersonation, card agents)"),
        "recruitment": (PROMOTION, "promotion (job ads; unsolicited but not fraud by their wording)"),
    },
    "smishtank": {
        "smishing": (fraud(FraudSubtype.PHISHING_LINK), "never trained on: held-out smishing recall only"),
    },
    "seed": {
        "*": ("(column 1)", "hand-written by the skyshield authors (src/skyshield/text/seed_examples.tsv)"),
    },
}

#: Datasets the shipped model learns from; smishtank is kept out on purpose (held-out recall).
TRAINING_DATASETS = ["uci_sms_spam", "mendeley_smishing", "telecom_fraud_texts_5", "zh_sms_800k",
                     "zh_spam_6class", "seed"]

#: When the same text (by dedup key) carries several labels, the class from the first dataset here wins.
LABEL_PRIORITY = ["seed", "mendeley_smishing", "zh_spam_6class", "telecom_fraud_texts_5", "uci_sms_spam",
                  "zh_sms_800k", "smishtank"]

#: Corpus terms, printed in the model card.
TERMS: dict[str, str] = {
    "uci_sms_spam": "CC BY 4.0 (UCI ML Repository); cite Almeida et al., DocEng 2011",
    "mendeley_smishing": "Mendeley Data record (default CC BY 4.0); cite Mishra & Soni 2022, "
                         "doi:10.17632/f45bkkt8pr.1",
    "telecom_fraud_texts_5": "RESEARCH USE ONLY, NO COMMERCIAL USE (dataset README; repo GPL-3.0); cite Li et al., "
                             "Appl. Sci. 2024, doi:10.3390/app142411628",
    "zh_sms_800k": "2015 CCF/DataCastle competition data, NO LICENCE STATED: research and evaluation only",
    "zh_spam_6class": "hand-sorted subset of the 800k corpus (xiaojie16), NO LICENCE STATED: research only",
    "smishtank": "no licence stated; cite Timko & Rahman, CODASPY 2024 (evaluation only, never trained on)",
    "seed": "written for skyshield, Apache-2.0 like the code",
}


@dataclass(slots=True)
class Record:
    """One labelled text as a corpus gives it."""

    text: str
    dataset: str
    native: str            # the dataset's own label, lower-cased
    cls: str               # the skyshield class it maps to
    source_id: str = ""    # line number / message id in the source file
    #: False for rows that may only ever be training data (spam-only blocks of the 800k subset).
    testable: bool = True


@dataclass(slots=True)
class Item:
    """One distinct text after pooling: its class and every dataset's native label for it."""

    key: str
    text: str
    cls: str
    natives: dict[str, str] = field(default_factory=dict)
    testable_in: set[str] = field(default_factory=set)


_NOT_WORD = re.compile(r"[\W_]+")
_DIGIT = re.compile(r"\d")


def dedup_key(text: str) -> str:
    """Case, width, digits, spaces and punctuation do not make a text new."""
    key = unicodedata.normalize("NFKC", text).casefold()
    key = _DIGIT.sub("0", key)
    return _NOT_WORD.sub("", key)


# --- readers -------------------------------------------------------------------------------------


def read_uci(data_dir: Path) -> list[Record]:
    path = Path(data_dir) / "uci_sms_spam" / "SMSSpamCollection"
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if len(row) < 2:
                continue
            label, text = row[0].strip().lower(), "\t".join(row[1:])
            cls = HAM if label == "ham" else en_spam_class(text)
            out.append(Record(text, "uci_sms_spam", label, cls, str(n)))
    return out


def read_mendeley(data_dir: Path) -> list[Record]:
    path = Path(data_dir) / "mendeley_smishing" / "Dataset_5971.csv"
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            label = (row.get("LABEL") or "").strip().lower()
            text = row.get("TEXT") or ""
            if label not in LABEL_MAP["mendeley_smishing"] or not text.strip():
                continue
            if label == "spam":
                cls = en_spam_class(text)
            elif label == "smishing" and EN_PRIZE_CUE.search(text):
                cls = fraud(FraudSubtype.PRIZE)
            else:
                cls = LABEL_MAP["mendeley_smishing"][label][0]
            out.append(Record(text, "mendeley_smishing", label, cls, str(n)))
    return out


def read_smishtank(data_dir: Path) -> list[Record]:
    path = Path(data_dir) / "smishtank" / "smishtank.csv"
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            text = (row.get("MainText") or "").strip()
            if text:
                out.append(Record(text, "smishtank", "smishing", fraud(FraudSubtype.PHISHING_LINK),
                                  row.get("messageid", ""), testable=True))
    return out


def read_telecom(data_dir: Path) -> list[Record]:
    path = Path(data_dir) / "telecom_fraud_texts_5" / "telecom_fraud_texts_5.csv"
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            label = row["label"].strip()
            text = clean_telecom(row["text"])
            cls = LABEL_MAP["telecom_fraud_texts_5"][label][0]
            if label == "0" and (ZH_MARKETING_CUE.search(text) or ZH_OFFER_CUE.search(text)):
                cls = PROMOTION
            out.append(Record(text, "telecom_fraud_texts_5", label, cls, str(n)))
    return out


def read_zh800k(data_dir: Path) -> list[Record]:
    """Lines 1-10,000 keep the real class prior and may be tested on; the spam-only blocks train only."""
    path = Path(data_dir) / "zh_sms_spam_800k_subset" / "zh_sms_800k_subset.tsv"
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            label, text = row["label"].strip(), unmask_digits(row["text"] or "")
            if not text.strip():
                continue
            cls = HAM if label == "0" else zh_spam_class(text, PROMOTION)
            out.append(Record(text, "zh_sms_800k", label, cls, row["line_id"],
                              testable=row["source"] == "zpdesu_first10k"))
    return out


def read_zh6class(data_dir: Path) -> list[Record]:
    path = Path(data_dir) / "zh_sms_spam_800k_subset" / "zh_spam_6class.tsv"
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            label, text = row["category"].strip().lower(), unmask_digits(row["text"] or "")
            if label not in LABEL_MAP["zh_spam_6class"] or not text.strip():
                continue
            cls = LABEL_MAP["zh_spam_6class"][label][0]
            if cls == PROMOTION:
                cls = zh_spam_class(text, PROMOTION)
            out.append(Record(text, "zh_spam_6class", label, cls, row["line_id"], testable=False))
    return out


SEED_PATH = Path(__file__).with_name("seed_examples.tsv")


def read_seed(path: Path = SEED_PATH) -> list[Record]:
    """Hand-written examples: ``class<TAB>text``, ``#`` comments. Always training data."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cls, sep, text = line.partition("\t")
        if not sep or cls not in CLASSES and cls not in {"notification", "verification", "personal"}:
            raise ValueError(f"{path}:{n}: expected 'class<TAB>text' with a known class, got {line[:60]!r}")
        # The seed file may say which kind of ham it is; the model learns them all as ham.
        native = cls
        if cls in {"notification", "verification", "personal"}:
            cls = HAM
        out.append(Record(text, "seed", native, cls, str(n), testable=False))
    return out


READERS = {
    "uci_sms_spam": read_uci,
    "mendeley_smishing": read_mendeley,
    "telecom_fraud_texts_5": read_telecom,
    "zh_sms_800k": read_zh800k,
    "zh_spam_6class": read_zh6class,
    "smishtank": read_smishtank,
}


def load_all(data_dir: Path, include: Iterable[str] | None = None, skip_missing: bool = False) -> list[Record]:
    """Every record of the named datasets (default: all, seed included).

    With ``skip_missing`` a corpus whose folder is absent is left out (so a model can be trained
    without the research-only corpora); otherwise that is an error.
    """
    names = list(include) if include is not None else [*READERS, "seed"]
    records: list[Record] = []
    for name in names:
        if name == "seed":
            records.extend(read_seed())
            continue
        if name not in READERS:
            raise ValueError(f"unknown dataset {name!r}; known: {', '.join(READERS)}")
        if not (Path(data_dir) / _DIRS[name] / _FILES[name]).is_file():
            if skip_missing:
                continue
            raise FileNotFoundError(f"dataset {name} not found under {data_dir}")
        records.extend(READERS[name](Path(data_dir)))
    return records


def present_datasets(data_dir: Path) -> list[str]:
    """The corpora found under ``data_dir``."""
    return [name for name in READERS if (Path(data_dir) / _DIRS[name] / _FILES[name]).is_file()]


_FILES = {
    "uci_sms_spam": "SMSSpamCollection",
    "mendeley_smishing": "Dataset_5971.csv",
    "telecom_fraud_texts_5": "telecom_fraud_texts_5.csv",
    "zh_sms_800k": "zh_sms_800k_subset.tsv",
    "zh_spam_6class": "zh_spam_6class.tsv",
    "smishtank": "smishtank.csv",
}

_DIRS = {
    "uci_sms_spam": "uci_sms_spam",
    "mendeley_smishing": "mendeley_smishing",
    "telecom_fraud_texts_5": "telecom_fraud_texts_5",
    "zh_sms_800k": "zh_sms_spam_800k_subset",
    "zh_spam_6class": "zh_sms_spam_800k_subset",
    "smishtank": "smishtank",
}


def pool(records: Iterable[Record]) -> list[Item]:
    """Deduplicate records across datasets; the class comes from the highest-priority dataset.

    ``testable_in`` lists the datasets whose own protocol may test on the item (the spam-only blocks
    of the 800k subset and the seed set are training-only).
    """
    rank = {name: i for i, name in enumerate(LABEL_PRIORITY)}
    items: dict[str, Item] = {}
    best: dict[str, int] = {}
    for rec in records:
        key = dedup_key(rec.text)
        if not key:
            continue
        item = items.get(key)
        if item is None:
            item = items[key] = Item(key, rec.text, rec.cls)
            best[key] = rank[rec.dataset]
        elif rank[rec.dataset] < best[key]:
            item.cls, best[key] = rec.cls, rank[rec.dataset]
        item.natives.setdefault(rec.dataset, rec.native)
        if rec.testable:
            item.testable_in.add(rec.dataset)
    return list(items.values())
