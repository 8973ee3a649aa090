"""Convert OpenAI CLIP's byte-level BPE file into Hugging Face `vocab.json` + `merges.txt`.

The source file `bpe_simple_vocab_16e6.txt.gz` ships inside the `open_clip_torch` wheel (MIT licence;
the vocabulary itself is OpenAI CLIP's, MIT). CLIP uses only the first 48,894 merges of that file; its
vocabulary is, in id order: the 256 byte symbols, the same 256 symbols with the end-of-word marker
`</w>`, one entry per merge (the two halves joined), then `<|startoftext|>` (49406) and
`<|endoftext|>` (49407) — 49,408 entries.

Usage:
    python scripts/make_clip_tokenizer.py [--bpe PATH] [--output_dir clip_tokenizer]
"""

import argparse
import gzip
import json
import logging
import os


logger = logging.getLogger(__name__)

NUM_MERGES = 48_894  # 49,408 entries - 2 * 256 byte symbols - 2 special tokens
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP reversible map from the 256 byte values to printable unicode characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def default_bpe_path() -> str:
    import open_clip

    return os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")


def convert(bpe_path: str) -> tuple[dict[str, int], list[str]]:
    """Returns `(vocab, merges)`: token -> id (49,408 entries) and the 48,894 merge lines `"a b"`."""
    with gzip.open(bpe_path, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    # line 0 is a version header
    merges = [line for line in lines[1 : NUM_MERGES + 1]]
    if len(merges) != NUM_MERGES or any(len(m.split()) != 2 for m in merges):
        raise ValueError(f"{bpe_path}: expected {NUM_MERGES} two-part merge lines")
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges] + [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError(f"{bpe_path}: duplicate vocabulary entries")
    return vocab, merges


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bpe", default=None, help="path to bpe_simple_vocab_16e6.txt.gz (default: from open_clip)")
    parser.add_argument("--output_dir", default="clip_tokenizer")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)

    vocab, merges = convert(args.bpe or default_bpe_path())
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "vocab.json"), "w", encoding="utf-8") as handle:
        json.dump(vocab, handle, ensure_ascii=False)
    with open(os.path.join(args.output_dir, "merges.txt"), "w", encoding="utf-8") as handle:
        handle.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    logger.info("wrote %d tokens and %d merges to %s", len(vocab), len(merges), args.output_dir)


if __name__ == "__main__":
    main()
