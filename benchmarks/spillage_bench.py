"""Spillage scanner cost: µs to scan an 8 KiB prompt for marking banners.

Prompts are generated prose (French, German, English, and a mix with accents
and capitals), each with and without a banner. Beside each figure it measures a
*floor* in the same run: one ``str.find`` of an absent word over the same text
(the cheapest full pass Python offers). Pinned to one core.

Goal: <= 50 µs for an 8 KiB prompt of ordinary prose.

Run: python benchmarks/spillage_bench.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import random
import time

from policies.spillage import highest_banner

WORDS = {
    "French": "le la les de des du un une et est dans pour sur avec ce cette rapport ministère "
              "sécurité réseau Paris données traitement préfecture Diffusion diffusion restreinte "
              "comité Secrétariat général défense nationale".split(),
    "German": "Der die das und ist nicht für den mit auf Bericht Sicherheit Daten Lage Behörde "
              "Vertrag vertraulich Dienstgebrauch Geheimschutz Bundesamt Stadt Ende Rat".split(),
    "English": "The of and to in is that for it with as was on Report Security System Cloud "
               "Operator secret restricted confidential NATO EU API GPU".split(),
}
WORDS["mixed"] = [w for words in WORDS.values() for w in words]


def prose(words: list[str], size: int, seed: int) -> str:
    rng = random.Random(seed)
    out, length = [], 0
    while length < size:
        word = rng.choice(words)
        if rng.random() < 0.06:
            word = word.capitalize()
        out.append(word)
        length += len(word) + 1
        if rng.random() < 0.08:
            out.append(".\n")
    return " ".join(out)[:size]


def best_us(repeat: int, number: int, fn) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=500)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"{'prompt (8 KiB)':<28} {'µs/scan':>8} {'floor µs':>9} {'ratio':>6}  banner")
    for index, (language, words) in enumerate(WORDS.items()):
        text = prose(words, 8192, seed=index)
        banner = text[:4000] + "\nDIFFUSION RESTREINTE\n" + text[4000:8170]
        for label, prompt in ((language, text), (f"{language} + banner", banner)):
            found = highest_banner(prompt)
            cost = best_us(args.repeat, args.number, lambda: highest_banner(prompt))
            floor = best_us(args.repeat, args.number, lambda: prompt.find("zzqzz"))
            print(f"{label:<28} {cost:>8.1f} {floor:>9.2f} {cost / floor:>5.0f}x  "
                  f"{found.id if found else '—'}")
    print("goal: <= 50 µs for an 8 KiB prompt of ordinary prose")


if __name__ == "__main__":
    main()
