"""Keras's file listing for the trees used in src/dataset/index.rs's tests.

Produced with Python 3.11, TensorFlow 2.21, Keras 3.15.1 (on Linux). Rerun from anywhere:

    python tests/reference/dataset_index.py

It builds the trees of `files_are_found_recursively_in_root_then_name_order` and
`symlinked_sub_directories_are_not_entered_but_symlinked_classes_and_files_count` in a temporary
directory and prints (label, relative path) as `keras.utils.image_dataset_from_directory` lists
them (without its shuffle). Printed with Keras 3.15.1:

    recursive: ['a', 'b']
    0 a/._apple.jpg
    0 a/.hidden.gif
    0 a/b.JPG
    0 a/z.png
    0 a/.ipynb_checkpoints/x.png
    0 a/sub/B.bmp
    0 a/sub/c.jpeg
    0 a/sub-x/a.png
    0 a/sub/deeper/a.png
    0 a/sub2/a.png
    1 b/1.Png
    symlinks: ['a', 'b']
    0 a/linked_file.png
    0 a/own.png
    1 b/far.png
"""

import os
import tempfile

from keras.src.utils.dataset_utils import index_directory

FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")

RECURSIVE = [
    "a/z.png", "a/b.JPG", "a/sub2/a.png", "a/sub/deeper/a.png", "a/sub-x/a.png", "a/sub/c.jpeg",
    "a/sub/B.bmp", "a/.hidden.gif", "a/._apple.jpg", "a/.ipynb_checkpoints/x.png", "a/notes.txt",
    "a/photo.webp", "a/photo.tif", "a/jpg", "b/1.Png",
]


def touch(root, rel):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("x")


def show(title, root):
    paths, labels, classes = index_directory(
        root, "inferred", formats=FORMATS, shuffle=False, verbose=False
    )
    print(f"{title}: {classes}")
    for label, path in zip(labels, paths):
        print(label, os.path.relpath(path, root))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "recursive")
        for rel in RECURSIVE:
            touch(root, rel)
        show("recursive", root)

        root, outside = os.path.join(tmp, "symlinks"), os.path.join(tmp, "outside")
        touch(outside, "elsewhere/far.png")
        touch(root, "a/own.png")
        os.symlink(os.path.join(outside, "elsewhere"), os.path.join(root, "a/linked_dir"))
        os.symlink(
            os.path.join(outside, "elsewhere/far.png"), os.path.join(root, "a/linked_file.png")
        )
        os.symlink(os.path.join(outside, "elsewhere"), os.path.join(root, "b"))
        show("symlinks", root)


if __name__ == "__main__":
    main()
