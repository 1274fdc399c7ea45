"""Hits -> Answer: the sentences that answer the question, quoted verbatim, each with its [n].

No language model is needed. The sentences of the best passages were stored with their
vectors at ingest, so nothing is embedded here but the question (already done). A sentence
is scored by its similarity to the question, the question's terms it holds (Dutch stemming,
weighted by rarity) and what the question asks for: a person or organisation for "wie", a
date for "wanneer", a number for "hoeveel", countries for "welke landen"; for quoting, the best of them are read
again together with the question by the sentence reranker (`rag.answer.rerank`). A sentence that
leans on the one before it ("Dit ...", "Daarbij ...") brings that one along. A question
about a position across letters ("Wat zei Nederland over X?") gets one quote per letter,
ordered by date, so the answer reads as a short timeline.

It abstains ("Daarover vind ik geen antwoord in de brieven.", with the nearest passages as possibly relevant)
when the learned scorer's P(the letters searched answer) (`rag.answer.scorer`), set beside the sentence it would
quote first by the decision fitted on the eval's dev split, is below the threshold chosen there
(`rag/answer/calibration.json`). Among its signals: key words of the question that no letter holds, not even
inside a compound ("vangst" in "bijvangst"), as one ("bronheffingstarief") or in another form of a verb
("verhoogt": verhogen), weighted by how rare they are in Dutch at large; the first such word is named ("'Arctische'
komt in geen enkele brief voor"). Without a scorer for the model, the rule before it: the best sentence's
similarity and the share of key terms the quoted passages hold.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

import numpy as np

from rag.answer.rerank import PairScorer, reread
from rag.answer.scorer import DECISION_FEATURES, QUESTION_FEATURES, SENTENCE_FEATURES, LearnedScorer, LogisticModel, english_view
from rag.index.lexical import tokenize
from rag.index.store import Generation
from rag.language import (ANSWER_HEADING_IN_TEXT, MONTH_ALTERNATION, QUESTION_WORDS, REPORTING_VERBS, fold, frequency,
                          is_english, shown_date, stopwords)
from rag.readers.document import FOOTNOTES_HEADING
from rag.search.retrieval import Hit
from rag.settings import AnswerSettings

RARE = 4.0  # Zipf frequency below which an absent key word counts as rare (4: about one in ten thousand words)
# A verb's -t or -d form ("verhoogt", "verhoogd") that the stemmer keeps apart from its others ("verhogen": verhog).
_VERB_FORM = re.compile(r"(?<=\w{3})(?:([aeou])\1)?([^aeiou])[td]$")
ABSTAIN_NL = "Daarover vind ik geen antwoord in de brieven."
ABSTAIN_EN = "I find no answer to that in the letters."


@dataclass(frozen=True)
class Calibration:
    """When to abstain, for one model: fitted on the dev split (`rag eval --calibrate`)."""

    weak_evidence: float  # the hand-set scorer: the best sentence's similarity below this, no answer
    key_terms: float  # the hand-set scorer: share of the question's key terms the quoted passages must hold
    calibrated: bool = True
    answerable: float | None = None  # the learned scorer: P(the letters answer) below this, no answer
    # An English question shares no words with Dutch letters: its P rests on similarity alone and is lower for
    # the same evidence, so it has a threshold of its own.
    answerable_english: float | None = None
    # The learned scorer's P set beside the sentence quoted first (`scorer.DECISION_FEATURES`), fitted on dev; the
    # thresholds above are then on its P. None: on the scorer's P itself.
    decision: LogisticModel | None = None

    def answerable_p(self, evidence: "Evidence") -> float | None:
        """P(the letters answer) that the thresholds are set on."""
        if evidence.answerable is None or self.decision is None:
            return evidence.answerable
        return float(self.decision.probability(decision_row(evidence))[0])

    @classmethod
    def for_model(cls, model_name: str, settings: AnswerSettings) -> "Calibration":
        try:
            stored = json.loads(settings.calibration_file.read_text())[model_name]
            decision = LogisticModel.from_json(stored["decision"], DECISION_FEATURES) if "decision" in stored else None
            answerable, english = stored.get("answerable"), stored.get("answerable_english", stored.get("answerable"))
            if answerable is None and "weak_evidence" not in stored:
                raise KeyError("weak_evidence")  # neither rule was fitted
            # A learned scorer's calibration holds its thresholds alone; the hand-set rule (a --compare row) then
            # takes the conservative one: every key term must stand in the passages quoted.
            return cls(float(stored.get("weak_evidence", 0.0)), float(stored.get("key_terms", 1.0)),
                       answerable=float(answerable) if answerable is not None else None,
                       answerable_english=float(english) if english is not None else None, decision=decision)
        except (OSError, ValueError, KeyError, TypeError):
            # A model without calibration: a conservative rule; `rag eval` says the model is uncalibrated.
            return cls(weak_evidence=0.0, key_terms=1.0, calibrated=False)


@dataclass(frozen=True)
class Citation:
    n: int
    hit: Hit
    start: int
    end: int
    quote: str

    def as_json(self) -> dict:
        return {**self.hit.as_json(), "n": self.n, "text": self.quote, "start": self.start, "end": self.end,
                "passage_start": self.hit.start, "passage_end": self.hit.end}


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    abstained: bool
    citations: tuple[Citation, ...]
    related: tuple[Hit, ...] = ()
    mode: str = "extractive"
    notes: tuple[str, ...] = field(default=())

    def as_json(self) -> dict:
        return {"question": self.question, "answer": self.text, "abstained": self.abstained,
                "citations": [c.as_json() for c in self.citations], "mode": self.mode, "notes": list(self.notes),
                "related": [h.as_json() for h in self.related]}


# --- what the question asks for ------------------------------------------------------------

_WHO = re.compile(r"^\s*(?:en\s+)?(?:wie|welke?\s+(?:persoon|personen|minister|ministers|organisatie|organisaties|"
                  r"partij|partijen|bewindspersoon)|who|which\s+(?:person|minister|organi[sz]ation))\b", re.IGNORECASE)
_WHEN = re.compile(r"^\s*(?:en\s+)?(?:wanneer|per wanneer|sinds wanneer|tot wanneer|op welke datum|in welk jaar|when|what date)\b"
                   r"|\b(?:welke datum|welk jaar|hoe lang)\b", re.IGNORECASE)
_HOW_MANY = re.compile(r"\b(?:hoeveel|hoe groot|hoe hoog|welk bedrag|welk percentage|how many|how much)\b", re.IGNORECASE)
_COUNTRIES = re.compile(r"\b(?:welke|which)\s+(?:landen|bondgenoten|lidstaten|countries|allies|member states)\b", re.IGNORECASE)
# A question after a reason or cause: its answer gives one ("De inspectie wijt de daling aan ..."), in other words than
# the question's, which the sentences repeating the question's topic would otherwise outscore.
_WHY = re.compile(r"\b(?:waarom|hoe verklaart|hoe verklaren|wat is de reden|wat zijn de redenen|wat is de oorzaak|"
                  r"wat zijn de oorzaken|hoe komt het|waardoor|why|what is the reason|what caused)\b", re.IGNORECASE)
_POSITION = re.compile(r"\b(?:wat\s+(?:zei|zegt|vond|vindt|vinden|vonden)|standpunt|positie|inzet|"
                       r"what\s+(?:did|does)\s+\w+\s+(?:say|think))\b", re.IGNORECASE)

_DATE_IN_SENTENCE = re.compile(rf"\b(?:\d{{1,2}}\s+(?:{MONTH_ALTERNATION})|(?:{MONTH_ALTERNATION})\s+\d{{4}}|(?:19|20)\d\d)\b",
                               re.IGNORECASE)
_NUMBER_IN_SENTENCE = re.compile(r"\b\d+(?:[.,]\d+)?\b|\b(?:een|twee|drie|vier|vijf|zes|zeven|acht|negen|tien|elf|twaalf|"
                                 r"twintig|dertig|veertig|vijftig|honderd|duizend|miljoen|miljard|procent)\b", re.IGNORECASE)
_REASON_IN_SENTENCE = re.compile(r"\b(?:omdat|doordat|vanwege|als gevolg van|wijt|toe te schrijven|reden|redenen|oorzaak|"
                                 r"oorzaken|daardoor|veroorzaakt|komt door|het gevolg van|because|due to)\b", re.IGNORECASE)
_NAME_IN_SENTENCE = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-ZÀ-Ý][a-zà-ÿ’'-]+(?:\s+(?:van|de|der|den)?\s*[A-ZÀ-Ý][a-zà-ÿ’'-]+)+")
_COUNTRY_NAMES = re.compile(
    r"\b(?:Nederland|België|Duitsland|Frankrijk|Verenigd Koninkrijk|Engeland|Verenigde Staten|VS|Italië|Spanje|Portugal|"
    r"Polen|Hongarije|Tsjechië|Slowakije|Roemenië|Bulgarije|Griekenland|Turkije|Noorwegen|Zweden|Finland|Denemarken|"
    r"IJsland|Estland|Letland|Litouwen|Canada|Luxemburg|Oostenrijk|Ierland|Kroatië|Slovenië|Albanië|Montenegro|"
    r"Noord-Macedonië|Servië|Bosnië|Kosovo|Oekraïne|Rusland|Georgië|Wit-Rusland|Moldavië|China|Japan|India|Iran|Irak|"
    r"Syrië|Afghanistan|Libië|Mali|Jemen|Israël|Egypte|Marokko|Australië)\b")
# A sentence that opens with a pointer back, or has one among its first words, leans on the sentence before it.
_LEANS_BACK = re.compile(r"^(?:(?:Dit|Deze|Dat|Die|Hij|Zij|Ze|Ook|Tevens|Bovendien|This|These|It|They|He|She)\b|"
                         r"(?:\S+\s+){0,3}(?:daarbij|daarnaast|daarom|daardoor|daarmee|daarin|daarover|hiermee|hierbij|"
                         r"hierover|hierin|eveneens|ook)\b)")


# What a question asks for, the first that applies: a reason, countries, a number, a date, a name.
_ASKED = ((_WHY, _REASON_IN_SENTENCE), (_COUNTRIES, _COUNTRY_NAMES), (_HOW_MANY, _NUMBER_IN_SENTENCE),
          (_WHEN, _DATE_IN_SENTENCE), (_WHO, _NAME_IN_SENTENCE))


def _asks_for(question: str):
    return next((answered for asked, answered in _ASKED if asked.search(question)), None)


def key_words(question: str) -> list[str]:
    """The words that carry the question's topic (names, places, rare words), without question words, stop words
    and the generic words of a letter about policy."""
    return [w for w in re.findall(r"[\w’'-]+", question) if fold(w) not in stopwords() and fold(w) not in _GENERIC]


def key_terms(question: str, tokenize=tokenize) -> list[str]:
    """The question's key terms, stemmed as the index stems them."""
    return list(dict.fromkeys(tokenize(" ".join(key_words(question)))))


# Words every letter to parliament uses: they say nothing about whether these letters answer.
_GENERIC = QUESTION_WORDS | REPORTING_VERBS | {
    "nederland", "nederlandse", "kabinet", "regering", "minister", "ministers", "staatssecretaris", "kamer", "brief",
    "brieven", "letter", "letters", "standpunt", "besproken", "bespraken", "genoemd", "wil", "willen", "wordt", "worden",
    "werd", "gaan", "komt", "komen", "doen", "doet", "heeft", "hebben", "zijn", "volgens", "over", "netherlands", "dutch",
    "government", "mening", "opvatting", "inzet", "positie", "netherland",
}


# --- scoring and choosing sentences ---------------------------------------------------------

@dataclass(frozen=True)
class ScoredSentence:
    hit: Hit
    start: int
    end: int
    dense: float
    score: float  # similarity plus small hand-set bonuses: what is quoted
    position: int  # the sentence's place in its passage
    features: tuple[float, ...] = ()  # `scorer.SENTENCE_FEATURES`
    answers: float | None = None  # the learned scorer's P(it answers)


@dataclass(frozen=True)
class Evidence:
    """What the abstention rule looks at: how similar the best sentence is, how many of the question's key terms
    the passages it would quote from hold, which key words no letter holds, and the learned P(answerable)."""

    best_dense: float
    key_terms_found: float
    absent: tuple[str, ...] = ()  # key words of the question that no letter searched holds, rarest first
    features: tuple[float, ...] = ()  # `scorer.QUESTION_FEATURES`
    answerable: float | None = None
    first_dense: float = 0.0  # the sentence the answer would quote first: its similarity to the question
    first_answers: float = 0.0  # and the sentence model's P that it answers
    first: tuple[str, int, int] | None = None  # and where it stands: its letter, start and end


def decision_row(evidence: Evidence) -> tuple[float, ...]:
    """`scorer.DECISION_FEATURES` of one question's evidence."""
    p = min(max(evidence.answerable or 0.0, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p))), evidence.first_dense, evidence.first_answers, *evidence.features


def score_sentences(question: str, hits: list[Hit], index: Generation, query_vector: np.ndarray,
                    settings: AnswerSettings, scorer: LearnedScorer | None = None) -> list[ScoredSentence]:
    """The candidate sentences of the best passages, best first: similarity plus small hand-set bonuses (the question's
    terms, what it asks for, the passage's rank); with a learned scorer, its P(it answers) for each."""
    weights = dict(zip(terms := key_terms(question, index.lexical.tokenize), index.lexical.idf(terms)))
    total = sum(weights.values()) or 1.0
    share = lambda held: sum(weight for term, weight in weights.items() if term in held) / total  # noqa: E731
    wanted = _asks_for(question)
    english = float(is_english(question))
    found = []
    for hit in hits[:settings.passages_read]:
        starts, ends, vectors = index.sentences_of(hit.row)
        if not len(starts) or hit.section == FOOTNOTES_HEADING:
            continue  # footnotes are references, not what a letter says
        text = index.document_at(index.letter(hit.doc_id).row).text
        answers_from = _answer_start(hit)
        similarity = (np.asarray(vectors, dtype=np.float32) @ query_vector).tolist()
        passage_dense = float(np.asarray(index.vectors[hit.row], dtype=np.float32) @ query_vector)
        held = [set(index.lexical.tokenize(text[start:end])) for start, end in zip(starts.tolist(), ends.tolist())]
        for position, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
            sentence = text[start:end]
            # A question in a letter (an MP's "Vraag", a rhetorical one) is asked there, not answered.
            if end - start < settings.shortest_sentence or start < answers_from or sentence.rstrip(" ”’\"»)").endswith("?"):
                continue
            nearby = set().union(*held[max(0, position - 1):position + 2])
            asked = 1.0 if wanted is not None and wanted.search(sentence) else 0.0
            found.append((hit, start, end, similarity[position], position, (
                similarity[position], 0.0, passage_dense, 1.0 / hit.rank, share(held[position]), share(nearby), asked,
                float(wanted is not None), float(position == 0), float(np.log(end - start)),
                float(bool(_LEANS_BACK.match(sentence))), english)))
    best = max((dense for _hit, _start, _end, dense, _position, _features in found), default=0.0)
    scored = []
    for hit, start, end, dense, position, features in found:
        features = (features[0], dense - best, *features[2:])
        score = (dense + settings.lexical_weight * features[4] + settings.type_weight * features[6]
                 + settings.rank_weight * (settings.passages_read - hit.rank))
        answers = None
        if scorer is not None:
            answers = float(scorer.sentence.probability(english_view(features, SENTENCE_FEATURES) if english else features)[0])
        scored.append(ScoredSentence(hit, start, end, dense, score, position, features, answers))
    return sorted(scored, key=lambda s: -s.score)


def _answer_start(hit: Hit) -> int:
    """In a passage of an answer to Kamervragen, where the answer begins (the question before it is the MP's)."""
    if not hit.section.startswith(("Vraag", "Vragen")):
        return -1
    found = ANSWER_HEADING_IN_TEXT.search(hit.text)
    return hit.start + found.start() if found else -1  # without the heading: a later piece of the answer


def weigh_evidence(question: str, scored: list[ScoredSentence], index: Generation, query_vector: np.ndarray,
                   scorer: LearnedScorer | None = None, allowed: np.ndarray | None = None,
                   background: np.ndarray | None = None) -> Evidence:
    """How well the letters searched (`allowed`: a mask over the passages, None for all) answer the question;
    `background`: passages to set the best similarity against (the scorer's when not given)."""
    best_dense = max((s.dense for s in scored), default=0.0)
    # How far the best sentence stands above what a passage of parliamentary letters scores for this question: a
    # measure that an English question, whose similarities to Dutch text all run lower, shares with a Dutch one.
    background = background if background is not None else scorer.background if scorer is not None else None
    contrast = 0.0
    if scored and background is not None:
        similarities = background @ np.asarray(query_vector, dtype=np.float32)
        contrast = (best_dense - float(similarities.mean())) / (float(similarities.std()) + 1e-3) / 10.0
    words = list(dict.fromkeys(key_words(question)))
    terms = key_terms(question, index.lexical.tokenize)
    absent = sorted((word for word in words if not _held(index, word, allowed)), key=frequency)
    # A rare word no letter holds ("Arctische") says the letters do not answer; a common one is often a synonym of
    # what they do say, and says little.
    rare = [word for word in absent if frequency(word) < RARE]
    weights = dict(zip(terms, index.lexical.idf(terms)))
    rare_terms = set(index.lexical.tokenize(" ".join(rare)))
    absent_share = sum(w for t, w in weights.items() if t in rare_terms) / (sum(weights.values()) or 1.0)
    rarest = max((1.0 - frequency(word) / 7.0 for word in absent), default=0.0)
    near_share = weighted_near = 1.0 if scored else 0.0
    if scored and terms:
        near = {s.hit.row: s.hit for s in scored[:3]}  # the passages the best sentences stand in
        held = set(index.lexical.tokenize(" ".join(hit.title + " " + hit.section + " " + hit.text for hit in near.values())))
        near_share = sum(term in held for term in terms) / len(terms)
        weighted_near = sum(w for t, w in weights.items() if t in held) / (sum(weights.values()) or 1.0)
    elsewhere = max((s.dense for s in scored if scored and s.hit.row != scored[0].hit.row), default=0.0)
    letters = len({s.hit.doc_id for s in scored[:5]}) / 5.0
    best_sentence = max((s.answers or 0.0 for s in scored), default=0.0)
    features = (best_sentence, best_dense, best_dense - elsewhere, absent_share, rarest, near_share,
                float(np.log1p(len(terms))), 0.0, letters, weighted_near, scored[0].features[5] if scored else 0.0, contrast)
    if is_english(question):
        features = english_view(features, QUESTION_FEATURES)
    answerable = float(scorer.answerable.probability(features)[0]) if scorer is not None and scored else None
    first = scored[0] if scored else None
    return Evidence(best_dense, near_share, tuple(absent), features, answerable if scored else 0.0 if scorer else None,
                    *((first.dense, first.answers or 0.0, (first.hit.doc_id, first.start, first.end)) if first else ()))


def _held(index: Generation, word: str, allowed: np.ndarray | None) -> bool:
    """Whether a letter searched (`allowed`, None for all) holds the word: as a term, in another form of a verb, inside
    a compound of theirs ("vangst" in "bijvangst") or as a compound of two terms they hold ("bronheffingstarief")."""
    lexical = index.lexical
    terms = lexical.tokenize(word)
    if not terms:
        return True  # nothing left to look for (a number, a stop word)
    terms += [term for term in lexical.tokenize(_VERB_FORM.sub(r"\1\2", word)) if term not in terms]
    for term in terms:
        numbers = [lexical.vocabulary[term]] if term in lexical.vocabulary else []
        if len(term) >= 5:
            numbers += lexical.compounds_with(term)
        if any(_admitted(lexical, number, allowed) for number in numbers):
            return True
    folded = fold(word)
    for cut in range(4, len(folded) - 3):
        left, right = folded[:cut], folded[cut:]
        for link in ("", "s", "e", "en"):
            base = left[:len(left) - len(link)] if left.endswith(link) else ""
            parts = (lexical.tokenize(base), lexical.tokenize(right)) if len(base) >= 4 else ((), ())
            if all(parts) and all(_admitted(lexical, lexical.vocabulary.get(term), allowed)
                                  for part in parts for term in part):
                return True
    return False


def _admitted(lexical, number: int | None, allowed: np.ndarray | None) -> bool:
    if number is None:
        return False
    return allowed is None or bool(allowed[lexical.passages_holding(number)].any())


def abstains(evidence: Evidence, calibration: Calibration, english: bool) -> bool:
    if evidence.answerable is not None and calibration.answerable is not None:
        threshold = calibration.answerable_english if english and calibration.answerable_english is not None \
            else calibration.answerable
        return calibration.answerable_p(evidence) < threshold
    if evidence.best_dense < calibration.weak_evidence:
        return True
    # An English question about Dutch letters shares few words with them: its key terms do not decide.
    return not english and evidence.key_terms_found < calibration.key_terms


def extractive_answer(question: str, hits: list[Hit], index: Generation, query_vector: np.ndarray,
                      calibration: Calibration, settings: AnswerSettings, notes: tuple[str, ...] = (),
                      scorer: LearnedScorer | None = None, allowed: np.ndarray | None = None,
                      reranker: PairScorer | None = None) -> Answer:
    english = is_english(question)
    scored = score_sentences(question, hits, index, query_vector, settings, scorer)
    evidence = weigh_evidence(question, scored, index, query_vector, scorer, allowed)  # on today's order (README)
    if not scored or abstains(evidence, calibration, english):
        missing = tuple(f"'{word}' occurs in none of the letters" if english else f"'{word}' komt in geen enkele brief voor"
                        for word in evidence.absent[:1])
        nearest = tuple(hit for hit in hits if hit.section != FOOTNOTES_HEADING)[:3]  # footnotes are references
        return Answer(question, ABSTAIN_EN if english else ABSTAIN_NL, True, (), nearest, notes=notes + missing)
    chosen = (_timeline(scored, settings) if _POSITION.search(question)  # a timeline: each letter's best by today's score
              else _closest(reread(question, scored, reranker) if reranker is not None else scored, settings))
    citations = _citations(_with_leaned_on(chosen, scored, index), index)
    return Answer(question, _compose(citations, english), False, tuple(citations), notes=notes)


def _closest(scored: list[ScoredSentence], settings: AnswerSettings) -> list[ScoredSentence]:
    """The best sentence and those close behind it, at most three from one letter."""
    best = scored[0].score
    chosen: list[ScoredSentence] = []
    per_letter: dict[str, int] = {}
    for sentence in scored:
        if sentence.score < best - settings.quote_margin or per_letter.get(sentence.hit.doc_id, 0) >= 3:
            continue
        chosen.append(sentence)
        per_letter[sentence.hit.doc_id] = per_letter.get(sentence.hit.doc_id, 0) + 1
        if len(chosen) == settings.max_quotes:
            break
    return chosen


def _timeline(scored: list[ScoredSentence], settings: AnswerSettings) -> list[ScoredSentence]:
    """One quote per letter that speaks to the question: its best sentence, if close enough to the best."""
    best = scored[0].score
    chosen: dict[str, ScoredSentence] = {}
    for sentence in scored:
        if sentence.score >= best - settings.timeline_margin and sentence.hit.doc_id not in chosen:
            chosen[sentence.hit.doc_id] = sentence
    return list(chosen.values())[:settings.max_quotes]


def _with_leaned_on(chosen: list[ScoredSentence], scored: list[ScoredSentence], index: Generation) -> list[ScoredSentence]:
    """A chosen sentence that opens by pointing back ("Dit ...") brings the sentence before it."""
    text_of = {}
    extended = list(chosen)
    for sentence in chosen:
        if sentence.position == 0:
            continue
        text = text_of.setdefault(sentence.hit.doc_id, index.document_at(index.letter(sentence.hit.doc_id).row).text)
        if not _LEANS_BACK.match(text[sentence.start:sentence.end]):
            continue
        starts, ends, _vectors = index.sentences_of(sentence.hit.row)
        before = (int(starts[sentence.position - 1]), int(ends[sentence.position - 1]))
        if not any((s.hit.doc_id, s.start) == (sentence.hit.doc_id, before[0]) for s in extended):
            extended.append(ScoredSentence(sentence.hit, *before, sentence.dense, sentence.score, sentence.position - 1))
    return extended


def _citations(chosen: list[ScoredSentence], index: Generation) -> list[Citation]:
    """One citation per run of adjacent chosen sentences, ordered by letter date and position."""
    ordered = sorted(chosen, key=lambda s: (s.hit.date or "", s.hit.doc_id, s.start))
    runs: list[list[ScoredSentence]] = []
    for sentence in ordered:
        last = runs[-1][-1] if runs else None
        if last and last.hit.doc_id == sentence.hit.doc_id and 0 <= sentence.start - last.end <= 2:
            runs[-1].append(sentence)
        elif last and last.hit.doc_id == sentence.hit.doc_id and sentence.start < last.end:
            continue  # the same sentence reached through two overlapping passages
        else:
            runs.append([sentence])
    citations = []
    for n, run in enumerate(runs, start=1):
        hit, start, end = run[0].hit, run[0].start, max(s.end for s in run)
        text = index.document_at(index.letter(hit.doc_id).row).text
        # The citation's passage is the hit's; adjacent sentences from an overlapping passage may reach past it.
        passage = hit if hit.start <= start and end <= hit.end else _widened(hit, start, end, text)
        citations.append(Citation(n, passage, start, end, text[start:end]))
    return citations


def _widened(hit: Hit, start: int, end: int, text: str) -> Hit:
    low, high = min(hit.start, start), max(hit.end, end)
    return replace(hit, start=low, end=high, text=text[low:high])


def _compose(citations: list[Citation], english: bool) -> str:
    lines = ["According to the letters:" if english else "Volgens de brieven:"]
    current = None
    for citation in citations:
        hit = citation.hit
        group = (hit.doc_id, hit.section)
        if group != current:
            when = (hit.date or "undated") if english else shown_date(hit.date)
            title = hit.title or hit.source.rsplit("/", 1)[-1]
            lines.append(f"\n{title} ({when}), {hit.section}:")
            current = group
        lines.append(f"“{' '.join(citation.quote.split())}” [{citation.n}]")
    return "\n".join(lines)
