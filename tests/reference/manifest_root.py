"""Reference root hash for src/fingerprint (tests: `root_hash_matches_the_python_reference`).

An independent implementation of the documented manifest serialization (src/fingerprint/mod.rs):
line 1 the class names as compact JSON, then one compact JSON line [path, size, sha256, label]
per file, ordered by UTF-8 path bytes; the root hash is the hex SHA-256 of that text. The fixture
below is the one the Rust test writes to disk.

Produced with Python 3 (standard library only: hashlib, json):
    python3 tests/reference/manifest_root.py
"""
import hashlib
import json

CLASSES = ["cats", "dogs"]
# relative path -> content; the label is the first path component (the class folder)
FILES = {
    "cats/a.png": b"alpha",
    "cats/sub/b.jpg": b"bravo\n",
    "dogs/c.JPG": b"",
    'dogs/"q" \u00e9.gif': bytes([0, 1, 2, 255]),
}


def line(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n"


text = line(CLASSES)
for path in sorted(FILES, key=lambda p: p.encode("utf-8")):
    content = FILES[path]
    text += line([path, len(content), hashlib.sha256(content).hexdigest(), path.split("/")[0]])
print(text, end="")
print("root:", hashlib.sha256(text.encode("utf-8")).hexdigest())
