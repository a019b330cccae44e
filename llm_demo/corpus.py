"""The project's own text generator: the pre-training corpus and the bundled sentiment task.

Everything here is generated from word lists and sentence frames with a seeded ``random.Random``, so
the same seed gives the same text on every machine (no downloads, no external data).

Design (why the bundled task leaves room to learn, see ``assets/README.md`` for the measurements):

- The sentiment lexicon (:data:`POSITIVE_WORDS`, :data:`NEGATIVE_WORDS`) is split in two halves.
  The task's *train* split uses only the first half (:func:`lexicon` ``("train")``); its *dev* and
  *test* splits only the held-out half. The pre-training corpus uses every word, in contexts that
  reveal its sentiment ("... I loved it.", "... I want my money back.", "It was <word>."), so the
  pre-trained model knows which words are positive or negative.
- The verbalizers " bad" / " good" appear in the corpus mostly in general sentences that say nothing
  about films ("The soup was good."); only a small fraction ``verbalizer_tie`` of the reviews that
  open with "I watched ..." or "We saw ..." end with "It was good." / "It was bad.". Pre-training
  learns this tie late and abruptly (zero-shot accuracy goes from 50 % to ~100 % within about 25
  AdamW steps); the bundled model is stopped inside that transition, so its zero-shot accuracy is
  partly above chance (a bias towards one verbalizer that only strongly worded reviews overcome),
  and fine-tuning has a clear, quick gain to make.

The second bundled task, *graded* (:func:`make_graded_task`), asks for three grades of the same
reviews: negative, mixed (one positive and one negative verdict) or positive, scored on " bad",
" fine" and " good". The pre-trained model never ties " fine" to films and reads a mixed review as
either polarity, so zero-shot accuracy is near chance (one third of the examples are mixed, and the
model's bias towards " good" costs half of the rest), and a zeroth-order fine-tune has a long way to go.

Command line (writes the bundled tasks)::

    python -m llm_demo.corpus --out assets/sentiment --seed 1234
    python -m llm_demo.corpus --task graded --out assets/graded --seed 2024
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

POSITIVE_WORDS: tuple[str, ...] = (
    "wonderful", "brilliant", "superb", "delightful", "charming", "moving", "gripping", "stunning",
    "beautiful", "hilarious", "clever", "touching", "excellent", "fantastic", "masterful", "engaging",
    "thrilling", "heartfelt", "witty", "lovely", "magnificent", "inspiring", "powerful", "fresh",
    "elegant", "joyful", "riveting", "splendid", "marvelous", "captivating", "tender", "gorgeous",
)
NEGATIVE_WORDS: tuple[str, ...] = (
    "dreadful", "boring", "awful", "terrible", "dull", "tedious", "clumsy", "bland",
    "painful", "lifeless", "messy", "horrible", "pointless", "weak", "stale", "silly",
    "shallow", "sloppy", "lazy", "forgettable", "annoying", "ugly", "confusing", "predictable",
    "tiresome", "hollow", "cheap", "flat", "dismal", "wretched", "unbearable", "grating",
)

FIRST_NAMES = ("Ana", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jonas",
               "Kenji", "Lena", "Marco", "Nadia", "Omar", "Priya", "Ravi", "Sofia", "Tomas", "Yuki")
LAST_NAMES = ("Lopez", "Smith", "Moreau", "Kim", "Rossi", "Novak", "Okafor", "Berg", "Silva",
              "Tanaka", "Weber", "Haddad", "Khan", "Costa", "Larsen", "Ivanova", "Park", "Adams")
FILM_FIRST = ("Silent", "Last", "Red", "Hidden", "Broken", "Golden", "Long", "Little", "Second",
              "Northern", "Distant", "Paper", "Winter", "Lost", "Quiet", "Open")
FILM_SECOND = ("River", "Summer", "Garden", "Road", "House", "Letter", "Harbor", "Machine", "Island",
               "Window", "Station", "Mountain", "Promise", "Bridge", "Forest", "City")
GENRES = ("drama", "comedy", "thriller", "western", "musical", "documentary", "romance", "mystery",
          "war film", "horror film", "cartoon", "crime story")
ASPECTS = ("acting", "script", "plot", "music", "ending", "camera work", "dialogue", "pacing", "cast",
           "story", "soundtrack", "direction", "opening scene", "lead actor", "humor", "editing")
DAYS = ("Monday", "Tuesday", "Friday", "Saturday", "Sunday", "week", "night", "month")
PLACES = ("cinema", "festival", "old theater", "drive-in", "film club", "multiplex")
RELATIONS = ("sister", "brother", "friend", "mother", "father", "uncle", "aunt", "neighbor")
SEASONS = ("spring", "summer", "autumn", "winter", "year")

POSITIVE_ENDINGS = ("I loved it.", "Five stars.", "I will watch it again.", "I told all my friends to see it.",
                    "It made my day.", "Highly recommended.", "I left the cinema smiling.")
NEGATIVE_ENDINGS = ("I hated it.", "One star.", "I want my money back.", "I left before the end.",
                    "What a waste of time.", "Not recommended.", "I almost fell asleep.")

# General (non-film) sentences. The verbalizer words appear here with no link to film sentiment.
NEUTRAL_ADJECTIVES = ("good", "bad", "fine", "long", "short", "hot", "cold", "new", "old", "big", "small",
                      "late", "early", "quiet", "busy", "full", "empty", "warm", "dry", "wet")
THINGS = ("soup", "bus", "weather", "road", "coffee", "train", "room", "market", "bread", "river",
          "street", "garden", "kitchen", "office", "school", "shop", "meeting", "holiday", "lake", "bridge")
GENERAL_FRAMES = (
    "The {thing} was {adj} today.",
    "It was {adj} outside, so {name} stayed home.",
    "{name} said the {thing} was {adj}.",
    "We walked to the {thing} after lunch.",
    "The {thing} near the {thing2} is {adj} in {season}.",
    "{name} bought bread at the {thing} on {day}.",
    "My {relation} works near the {thing}.",
    "The {thing} was {adj} and the {thing2} was {adj2}.",
    "On {day} the {thing} is always {adj}.",
    "{name} {last} moved to a {adj} house by the {thing}.",
    "It was {adj}.",
)


def lexicon(split: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (negative, positive) sentiment words used by a task split.

    ``"train"`` gives the words at even positions of the lexicon, ``"dev"``/``"test"``/``"heldout"``
    the words at odd positions (held out from the task's training data), ``"all"`` every word.
    """
    neg, pos = NEGATIVE_WORDS, POSITIVE_WORDS
    if split == "all":
        return neg, pos
    if split == "train":
        return neg[0::2], pos[0::2]
    if split in ("dev", "test", "heldout"):
        return neg[1::2], pos[1::2]
    raise ValueError(f"unknown lexicon split {split!r}; allowed: 'train', 'dev', 'test', 'heldout', 'all'")


def _film(rng: random.Random) -> str:
    return f"{rng.choice(FILM_FIRST)} {rng.choice(FILM_SECOND)}"


def _a(word: str) -> str:
    """The indefinite article for ``word``."""
    return "an" if word[0].lower() in "aeiou" else "a"


N_OPENINGS = 6
TIED_OPENINGS = (0, 2)  # "I watched ..." and "We saw ...": the only reviews the corpus ties to good/bad


def _opening(rng: random.Random, opening: int | None = None) -> tuple[str, str, str]:
    """A review's first, sentiment-free sentence, with the film's genre and director."""
    film, genre = _film(rng), rng.choice(GENRES)
    director = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    if opening is None:
        opening = rng.randrange(N_OPENINGS)
    opening_text = ((
        f"I watched {film} last {rng.choice(DAYS)}.",
        f"{film} is the new {genre} by {director}.",
        f"We saw {film} at the {rng.choice(PLACES)}.",
        f"My {rng.choice(RELATIONS)} took me to see {film}.",
        f"{film} came out this {rng.choice(SEASONS)}.",
        f"{director} directed {film}.",
    ))[opening]
    return opening_text, genre, director


def review(rng: random.Random, label: int, words: tuple[tuple[str, ...], tuple[str, ...]],
           opening: int | None = None) -> str:
    """One short film review whose sentiment is ``label`` (0 negative, 1 positive).

    Its sentiment words are drawn from ``words[label]``; everything else (titles, names, genres,
    aspects, neutral details) is sentiment-free. ``opening`` picks the first sentence's frame
    (0 .. N_OPENINGS - 1; random if None).
    """
    opening_text, genre, director = _opening(rng, opening)
    sentences = [opening_text]
    n_sentiment = rng.choice((1, 1, 2))
    for _ in range(n_sentiment):
        sentences.append(_verdict(rng, rng.choice(words[label]), genre, director))
    _add_detail(rng, sentences)
    return " ".join(sentences)


def _verdict(rng: random.Random, w: str, genre: str, director: str) -> str:
    """One sentence that judges the film (or one aspect of it) with the sentiment word ``w``."""
    aspect = rng.choice(ASPECTS)
    return rng.choice((
        f"The {aspect} was {w}.",
        f"It is {_a(w)} {w} {genre}.",
        f"I found the {aspect} {w}.",
        f"The {aspect} felt {w} from start to end.",
        f"{director.split()[1]} made {_a(w)} {w} film.",
        f"What {_a(w)} {w} {aspect}.",
        f"Honestly, the {aspect} is {w}.",
    ))


def _add_detail(rng: random.Random, sentences: list[str]) -> None:
    """Half of the time, insert one sentiment-free detail after the opening (in place)."""
    if rng.random() < 0.5:
        sentences.insert(rng.randrange(1, len(sentences) + 1), rng.choice((
            f"It runs {rng.randrange(80, 180)} minutes.",
            f"It stars {rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}.",
            f"The {rng.choice(ASPECTS)} reminded me of an old {rng.choice(GENRES)}.",
            f"I went with my {rng.choice(RELATIONS)}.",
        )))


def _general_sentence(rng: random.Random) -> str:
    thing, thing2 = rng.sample(THINGS, 2)
    return rng.choice(GENERAL_FRAMES).format(
        thing=thing, thing2=thing2, adj=rng.choice(NEUTRAL_ADJECTIVES), adj2=rng.choice(NEUTRAL_ADJECTIVES),
        name=rng.choice(FIRST_NAMES), last=rng.choice(LAST_NAMES), season=rng.choice(SEASONS),
        day=rng.choice(DAYS), relation=rng.choice(RELATIONS),
    )


def corpus_documents(n_documents: int = 20000, seed: int = 0, verbalizer_tie: float = 0.03) -> list[str]:
    """The pre-training corpus: ``n_documents`` short documents, deterministic for a given ``seed``.

    About half are film reviews over the whole lexicon, each followed by a sentence that reveals its
    sentiment (an outcome such as "I loved it." or "It was <same-polarity word>."); of those whose
    opening is in :data:`TIED_OPENINGS`, a fraction ``verbalizer_tie`` end with "It was good." /
    "It was bad." instead. The rest are general
    sentences in which " good" and " bad" carry no film sentiment, and word-meaning sentences
    ("People say <word> when they like something.").
    """
    if not 0.0 <= verbalizer_tie <= 1.0:
        raise ValueError(f"verbalizer_tie must be in [0, 1], got {verbalizer_tie}")
    rng = random.Random(seed)
    words = lexicon("all")
    docs: list[str] = []
    for _ in range(n_documents):
        kind = rng.random()
        if kind < 0.5:
            label = rng.randrange(2)
            opening = rng.randrange(N_OPENINGS)
            text = review(rng, label, words, opening)
            r = rng.random()
            if opening in TIED_OPENINGS and r < verbalizer_tie:
                ending = "It was good." if label else "It was bad."
            elif r < 0.5:
                ending = f"It was {rng.choice(words[label])}."
            else:
                ending = rng.choice(POSITIVE_ENDINGS if label else NEGATIVE_ENDINGS)
            docs.append(f"{text} {ending}")
        elif kind < 0.6:
            label = rng.randrange(2)
            w = rng.choice(words[label])
            docs.append(rng.choice((
                f"People say {w} when they {'like' if label else 'dislike'} something.",
                f"Critics use the word {w} for films they {'love' if label else 'hate'}.",
                f"If a film is {w}, {'watch it' if label else 'skip it'}.",
            )))
        else:
            docs.append(" ".join(_general_sentence(rng) for _ in range(rng.choice((1, 2, 3)))))
    return docs


def make_task(
    seed: int = 1234, n_train: int = 1600, n_dev: int = 200, n_test: int = 400
) -> dict[str, list[dict]]:
    """The bundled binary sentiment task: ``{"train": [...], "dev": [...], "test": [...]}``.

    Each example is ``{"text": review, "label": 0 | 1}`` with balanced labels. The train split uses
    the training half of the lexicon; dev and test use the held-out half (see :func:`lexicon`).
    """
    out: dict[str, list[dict]] = {}
    for offset, (split, n) in enumerate((("train", n_train), ("dev", n_dev), ("test", n_test))):
        rng = random.Random(seed * 1000 + offset)
        words = lexicon(split)
        labels = [i % 2 for i in range(n)]
        rng.shuffle(labels)
        out[split] = [{"text": review(rng, label, words), "label": label} for label in labels]
    return out


GRADES = ("negative", "mixed", "positive")
"""The labels of the graded task, in order (0, 1, 2)."""


def graded_review(rng: random.Random, label: int, words: tuple[tuple[str, ...], tuple[str, ...]]) -> str:
    """One review of the graded task: ``label`` 0 negative, 1 mixed, 2 positive.

    A negative or positive review has one or two verdicts of that polarity (as :func:`review`); a
    mixed one has exactly two, one of each polarity, in random order. Sentiment words come from
    ``words`` (``(negative, positive)``); openings and details are the sentiment task's.
    """
    if label not in (0, 1, 2):
        raise ValueError(f"graded label must be 0, 1 or 2, got {label!r}")
    opening_text, genre, director = _opening(rng)
    if label == 1:
        polarities = [0, 1]
        rng.shuffle(polarities)
    else:
        polarities = [label // 2] * rng.choice((1, 2))
    sentences = [opening_text] + [_verdict(rng, rng.choice(words[p]), genre, director) for p in polarities]
    _add_detail(rng, sentences)
    return " ".join(sentences)


def make_graded_task(
    seed: int = 2024, n_train: int = 1800, n_dev: int = 300, n_test: int = 600
) -> dict[str, list[dict]]:
    """The bundled graded task: ``{"train": [...], "dev": [...], "test": [...]}`` of
    ``{"text": review, "label": 0 | 1 | 2}`` (negative, mixed, positive), balanced. As in
    :func:`make_task`, train uses the training half of the lexicon, dev and test the held-out half."""
    out: dict[str, list[dict]] = {}
    for offset, (split, n) in enumerate((("train", n_train), ("dev", n_dev), ("test", n_test))):
        rng = random.Random(seed * 1000 + offset)
        words = lexicon(split)
        labels = [i % 3 for i in range(n)]
        rng.shuffle(labels)
        out[split] = [{"text": graded_review(rng, label, words), "label": label} for label in labels]
    return out


GRADED_INFO = {
    "template": "{text} It was",
    "verbalizers": [" bad", " fine", " good"],
    "description": "Three-way graded film-review sentiment: negative (label 0), mixed (1: one positive and "
                   "one negative verdict) or positive (2), scored on the next-token logits of ' bad', "
                   "' fine' and ' good' after the template. Train uses half of the sentiment lexicon; dev and "
                   "test use the held-out half. Made by llm_demo.corpus.make_graded_task.",
}

TASK_INFO = {
    "template": "{text} It was",
    "verbalizers": [" bad", " good"],
    "description": "Binary film-review sentiment, scored on the next-token logits of ' bad' (label 0) "
                   "and ' good' (label 1) after the template. Train uses half of the sentiment "
                   "lexicon; dev and test use the held-out half. Made by llm_demo.corpus.make_task.",
}


TASKS = {"sentiment": (make_task, TASK_INFO, 1234), "graded": (make_graded_task, GRADED_INFO, 2024)}
"""The tasks this generator writes: name -> (maker, task.json contents, the bundled seed)."""


def write_task(out_dir: str | Path, seed: int | None = None, task: str = "sentiment", **sizes: int) -> dict[str, int]:
    """Write ``train/dev/test.jsonl`` and ``task.json`` of ``task`` into ``out_dir``; return the split sizes."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    maker, task_info, bundled_seed = TASKS[task]
    seed = bundled_seed if seed is None else seed
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = maker(seed=seed, **sizes)
    for split, examples in splits.items():
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for ex in examples:
                f.write(json.dumps(ex, ensure_ascii=False) + "\n")
    info = dict(task_info, seed=seed)
    (out / "task.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return {k: len(v) for k, v in splits.items()}


def main(argv: list[str] | None = None) -> None:
    """Command line: write a bundled task (``--task sentiment`` or ``graded``)."""
    p = argparse.ArgumentParser(description="Write a bundled task (JSON lines + task.json).")
    p.add_argument("--task", choices=list(TASKS), default="sentiment", help="which task (default: sentiment)")
    p.add_argument("--out", default=None, help="output folder (default: assets/<task>)")
    p.add_argument("--seed", type=int, default=None, help="generator seed (default: 1234 sentiment, 2024 graded)")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-dev", type=int, default=None)
    p.add_argument("--n-test", type=int, default=None)
    a = p.parse_args(argv)
    sizes = {k: v for k, v in (("n_train", a.n_train), ("n_dev", a.n_dev), ("n_test", a.n_test)) if v is not None}
    out = a.out or f"assets/{a.task}"
    written = write_task(out, seed=a.seed, task=a.task, **sizes)
    print(f"wrote {out}: " + ", ".join(f"{k}={v}" for k, v in written.items()))


if __name__ == "__main__":
    main()
