"""FAISS over the passage vectors: the kind the corpus size calls for, built once, then updated in place.

Every passage gets a slot, a small integer, when its vector first enters the index, and keeps it
in later generations; the FAISS ids are the slots. An update is then the difference between the
slots of two generations: new passages are added with `add_with_ids`, removed ones dropped where
the kind allows it (flat, IVF) and tombstoned where it does not (HNSW keeps its graph; a tombstone
is excluded from every search by a bitmap over the slots). A full rebuild happens only when the
kind or its settings change, when tombstones make up `rebuild_tombstones` of an HNSW graph, or when
an IVF index has grown to `rebuild_ivf_growth` times what its lists were trained on. Slots also make
filters cheap: the passages a filter admits become a bitmap, not a hash set of ids.

`auto` is exact search up to `IndexSettings.exact_search_limit` passages and IVF over 8-bit codes above
it (`IndexSettings.ivf_vectors`): at a million synthetic passages HNSW's graph found too few of the exact
top 10 (README, "Scale"), and IVF removes what was removed instead of keeping tombstones. HNSW stays a
choice (`--index-type hnsw`): on 28,000 real passages efSearch 512 found 0.96 of them in under a millisecond.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.settings import IndexSettings

def ivf_lists(count: int) -> int:
    """Inverted lists for `count` vectors: about 4 sqrt(n), and at least 39 vectors to train each."""
    return max(1, min(int(4 * np.sqrt(max(count, 1))), count // 39 or 1))


class VectorIndex:
    """A FAISS index over slots, with the slots tombstoned since it was built."""

    def __init__(self, index, kind: str, settings: IndexSettings, tombstones: np.ndarray, trained_on: int) -> None:
        self.index = index
        self.kind = kind
        self.settings = settings
        self.tombstones = np.asarray(tombstones, dtype=np.int64)
        self.trained_on = trained_on

    @property
    def stored(self) -> int:
        """Vectors in FAISS, tombstones included."""
        return int(self.index.ntotal)

    @classmethod
    def build(cls, vectors: np.ndarray, slots: np.ndarray, settings: IndexSettings) -> "VectorIndex":
        import faiss

        count, dimension = vectors.shape
        kind = settings.resolved_kind(count)
        if kind == "flat":
            index = faiss.IndexIDMap(faiss.IndexFlatIP(dimension))
        elif kind == "hnsw":
            # The graph's vectors compressed (`IndexSettings.hnsw_vectors`): what keeps a million passages inside a
            # serving budget; the few candidates a search returns are rescored exactly (Generation).
            codes = {"sq8": faiss.ScalarQuantizer.QT_8bit, "fp16": faiss.ScalarQuantizer.QT_fp16}
            graph = faiss.IndexHNSWSQ(dimension, codes[settings.hnsw_vectors], settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = settings.hnsw_ef_construction
            if count and not graph.is_trained:  # sq8: each dimension's range, from an even sample of the vectors
                step = max(1, count // settings.hnsw_training_sample)
                graph.train(np.ascontiguousarray(vectors[::step], dtype=np.float32))
            index = faiss.IndexIDMap(graph)
        else:  # IVF stores ids itself and removes them without renumbering
            lists = ivf_lists(count)
            if settings.ivf_vectors == "sq8":  # 8-bit codes of each vector's offset from its list's centre
                index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dimension), dimension, lists,
                                                      faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            else:
                index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, lists, faiss.METRIC_INNER_PRODUCT)
            if count:  # k-means on an even sample of `ivf_training_per_list` vectors a list: minutes, not an hour, at 1M
                step = max(1, count // (settings.ivf_training_per_list * lists))
                index.train(np.ascontiguousarray(vectors[::step], dtype=np.float32))
        built = cls(index, kind, settings, np.zeros(0, np.int64), count)
        built.add(vectors, slots)
        return built

    def add(self, vectors: np.ndarray, slots: np.ndarray) -> None:
        for first in range(0, len(slots), 65536):  # bounded temporary copies at a million passages
            block = np.ascontiguousarray(vectors[first:first + 65536], dtype=np.float32)
            self.index.add_with_ids(block, np.ascontiguousarray(slots[first:first + 65536], dtype=np.int64))

    def updated(self, removed: np.ndarray, vectors: np.ndarray, added: np.ndarray, settings: IndexSettings,
                live_after: int) -> bool:
        """Apply a change in place; False when it calls for a full rebuild instead."""
        if settings.built_differently(self.settings) or settings.resolved_kind(live_after) != self.kind:
            return False
        self.settings = settings  # search-time parameters (efSearch, nprobe) change without a rebuild
        if self.kind == "hnsw":
            tombstones = np.union1d(self.tombstones, removed)
            if len(tombstones) > settings.rebuild_tombstones * (self.stored + len(added)):
                return False
            self.tombstones = tombstones
        elif len(removed):
            self.index.remove_ids(np.ascontiguousarray(removed, dtype=np.int64))
        if self.kind == "ivf" and live_after > settings.rebuild_ivf_growth * max(self.trained_on, 1):
            return False
        self.add(vectors, added)
        return True

    def search(self, vector: np.ndarray, k: int, allowed: "SlotBitmap | None" = None,
               depth_hint: int = 0, share: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Scores and slots of the k best vectors among the allowed slots (all live ones by default), which are
        `share` of the vectors: a graph searches `depth_hint` deep, IVF as many more lists as the share is small."""
        import faiss

        selector = allowed.selector() if allowed is not None else None
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.settings.hnsw_ef_search, k, depth_hint))
        elif self.kind == "ivf":
            # The lists searched hold as many admitted vectors under a filter as without one.
            nprobe = min(int(self.settings.ivf_nprobe / max(share, 1e-6)), faiss.extract_index_ivf(self.index).nlist)
            params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
        else:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
        scores, slots = self.index.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), k, params=params)
        return scores[0], slots[0]

    def save(self, folder: Path) -> dict:
        """Write the index; what the manifest records about it."""
        import faiss

        faiss.write_index(self.index, str(folder / "vectors.faiss"))
        np.save(folder / "tombstones.npy", self.tombstones)
        return {"kind": self.kind, "settings": self.settings.as_manifest(), "stored": self.stored,
                "tombstones": int(len(self.tombstones)), "trained_on": self.trained_on}

    @classmethod
    def load(cls, folder: Path, recorded: dict, settings: IndexSettings) -> "VectorIndex":
        """The index a generation holds, as `recorded` in its manifest, used with these `settings`."""
        import faiss

        # An index built before its vectors' form was recorded holds them as it did then: a graph in float16, IVF
        # lists in float32 (the next ingest rebuilds it).
        before = {"hnsw": {"hnsw_vectors": "fp16"}, "ivf": {"ivf_vectors": "flat"}}.get(recorded["kind"], {})
        built = {**before, **recorded["settings"]}
        return cls(faiss.read_index(str(folder / "vectors.faiss")), recorded["kind"],
                   settings.from_manifest(built), np.load(folder / "tombstones.npy"),
                   int(recorded["trained_on"]))


class SlotBitmap:
    """A set of slots as a bitmap FAISS can test in one lookup per candidate (kept alive with its selector)."""

    def __init__(self, slots: np.ndarray, size: int) -> None:
        bits = np.zeros(max(size, 1), dtype=bool)
        bits[slots] = True
        self.bytes = np.packbits(bits, bitorder="little")
        self._selector = None

    def selector(self):
        import faiss

        if self._selector is None:
            self._selector = faiss.IDSelectorBitmap(self.bytes)
        return self._selector


def describe(recorded: dict) -> str:
    """The index kind and its parameters in a line (README, bench, status)."""
    settings = recorded["settings"]
    if recorded["kind"] == "hnsw":
        codec = {"sq8": "8-bit", "fp16": "float16"}[settings.get("hnsw_vectors", "fp16")]
        detail = (f"{codec}, M {settings['hnsw_m']}, efConstruction {settings['hnsw_ef_construction']}, "
                  f"efSearch {settings['hnsw_ef_search']}")
    elif recorded["kind"] == "ivf":
        codec = {"sq8": "8-bit", "flat": "float32"}[settings.get("ivf_vectors", "flat")]
        detail = f"{codec}, {ivf_lists(recorded['trained_on'])} lists, nprobe {settings['ivf_nprobe']}"
    else:
        detail = "exact"
    return f"{recorded['kind']} ({detail}; {recorded['tombstones']} tombstones)" + ("" if settings["kind"] != "auto" else ", chosen by auto")

