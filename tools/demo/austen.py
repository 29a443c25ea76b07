#!/usr/bin/python3
"""Extract Jane Austen's six novels from Debian's r-cran-janeaustenr, without R.

The package stores its data as an R lazy-load database: `Rdata.rdx` is a
gzip'd serialized index, `Rdata.rdb` holds one zlib blob per variable, each an
R serialization (XDR, format 2 or 3). This reader understands the handful of
SEXP types those files use and refuses anything else.

Texts: public domain (Project Gutenberg transcriptions); package: MIT.
Usage: austen.py OUT_DIR [--pkg-root DIR]   (DIR defaults to /, i.e. the installed package)
"""
import argparse, gzip, os, struct, sys, zlib

NILVALUE, REF, SYM, LIST, CHAR, LGL, INT, REAL, STR, VEC = 254, 255, 1, 2, 9, 10, 13, 14, 16, 19
BOOKS = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion"]


class Reader:
    def __init__(self, data):
        self.d, self.p, self.refs = data, 0, []
        if self.d[:2] != b"X\n":
            raise ValueError("not an XDR R serialization")
        self.p = 2
        version = self.int()
        self.int(), self.int()  # writer R version, min reader version
        if version == 3:
            n = self.int()  # native encoding name
            self.p += n

    def int(self):
        v = struct.unpack_from(">i", self.d, self.p)[0]
        self.p += 4
        return v

    def obj(self):
        flags = self.int()
        t, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if t == NILVALUE:
            return None
        if t == REF:
            return self.refs[(flags >> 8) - 1]
        if t == SYM:
            name = self.obj()
            self.refs.append(name)
            return name
        if t == LIST:
            items = []
            while t == LIST:
                if has_attr:
                    self.obj()
                tag = self.obj() if has_tag else None
                items.append((tag, self.obj()))
                flags = self.int()
                t, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
            assert t == NILVALUE, t
            return dict(items)
        if t == CHAR:
            n = self.int()
            if n == -1:
                return None
            s = self.d[self.p:self.p + n].decode("utf-8", "replace")
            self.p += n
            return s
        if t in (LGL, INT):
            n = self.int()
            v = list(struct.unpack_from(">%di" % n, self.d, self.p))
            self.p += 4 * n
        elif t == REAL:
            n = self.int()
            v = list(struct.unpack_from(">%dd" % n, self.d, self.p))
            self.p += 8 * n
        elif t in (STR, VEC):
            v = [self.obj() for _ in range(self.int())]
        else:
            raise ValueError("unsupported R type %d" % t)
        if has_attr:
            attrs = self.obj()
            if isinstance(attrs, dict) and "names" in attrs and t == VEC:
                return dict(zip(attrs["names"], v))
        return v


def load(pkg_root):
    base = os.path.join(pkg_root, "usr/lib/R/site-library/janeaustenr/data/Rdata")
    index = Reader(gzip.open(base + ".rdx").read()).obj()
    rdb = open(base + ".rdb", "rb").read()
    books = {}
    for name in BOOKS:
        off, size = index["variables"][name]
        blob = rdb[int(off):int(off) + int(size)]
        books[name] = Reader(zlib.decompress(blob[4:])).obj()
    return books


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--pkg-root", default="/")
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    for name, lines in load(a.pkg_root).items():
        text = "\n".join(l or "" for l in lines)
        with open(os.path.join(a.out_dir, name + ".txt"), "w") as f:
            f.write(text + "\n")
        print("%-18s %7d lines %8d chars" % (name, len(lines), len(text)), file=sys.stderr)


if __name__ == "__main__":
    main()
