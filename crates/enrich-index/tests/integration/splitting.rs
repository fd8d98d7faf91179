//! Spans per language: a repository with one file per language, indexed once, and the exact
//! spans (symbol, kind, lines) expected in each; every span's bytes and hash checked
//! independently.

use enrich_types::span_hash;

use crate::support::{Repo, SpanRow, line_at};

const RUST: &str = r#"//! Shapes.
use std::fmt;

/// A point in the plane.
#[derive(Debug, Clone, Copy)]
pub struct Point<T> {
    pub x: T,
    pub y: T,
}

impl<T: Copy> Point<T> {
    /// Makes a point.
    pub fn new(x: T, y: T) -> Self {
        Self { x, y }
    }

    pub fn x(&self) -> T {
        self.x
    }
}

impl fmt::Display for Point<i32> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.x, self.y)
    }
}

pub trait Shape {
    fn area(&self) -> f64;
    fn name(&self) -> &str {
        "shape"
    }
}

pub enum Color {
    Red,
    Green,
}

macro_rules! square {
    ($x:expr) => {
        $x * $x
    };
}

mod geometry {
    pub fn distance(a: f64, b: f64) -> f64 {
        (a - b).abs()
    }
}

pub fn main() {
    fn nested() {}
    nested();
}
"#;

const PYTHON: &str = r#""""Greeting helpers."""
import os


@decorator
def add(a, b):
    """Adds two numbers.

    Longer text.
    """
    return a + b


class Greeter(Base):
    """Greets people."""

    greeting = "hi"

    def __init__(self, name):
        self.name = name

    @property
    def hello(self):
        def inner():
            return 1
        return inner()

    async def fetch(self):
        pass

    class Config:
        def load(self):
            pass


if __name__ == "__main__":
    def cli():
        pass
"#;

const JAVASCRIPT: &str = r#"import x from "y";

/** Greets by name. */
export function greet(name) {
  return "hi " + name;
}

class Animal extends Base {
  constructor(name) {
    this.name = name;
  }

  speak() {
    return 1;
  }

  handler = () => {};
  count = 0;
}

export const double = (a) => a * 2;

function* ids() {
  yield 1;
}

const config = { load() {} };
describe("x", () => {
  it("works", () => {});
});
"#;

const TYPESCRIPT: &str = r#"export interface Shape {
  area(): number;
}

export enum Color {
  Red,
  Green,
}

type Alias = string | number;

export abstract class Base implements Shape {
  private x: number = 1;
  constructor(private readonly y: number) {
    super();
  }
  area(): number {
    return 0;
  }
  abstract name(): string;
}

export function make<T>(x: T): T {
  return x;
}

namespace Geo {
  export function inside(): void {}
}

declare function ambient(): void;
"#;

const TSX: &str = r#"import React from "react";

export function App(props: { name: string }) {
  return <div>{props.name}</div>;
}

export const Button = () => <button />;

class Widget extends React.Component {
  render() {
    return <span />;
  }
}
"#;

const GO: &str = r#"package server

import "fmt"

// Server serves requests.
type Server struct {
    addr string
}

type Handler interface {
    Serve() error
}

type ID int

type (
    Pair struct{}
    Name = string
)

// Start starts the server.
func (s *Server) Start() error {
    return nil
}

func (l List[T]) Len() int { return 0 }

func Main() {
    fmt.Println("hi")
}
"#;

const JAVA: &str = r#"package p;

/** An outer class. */
public class Outer extends Base implements Runnable {
    private int x;

    public Outer(int x) {
        this.x = x;
    }

    @Override
    public void run() {}

    static class Inner {
        void deep() {}
    }

    interface Callback {
        void call();

        default void done() {}
    }

    enum Kind {
        A, B;

        int code() { return 0; }
    }

    record Pair(int a, int b) {
        int sum() { return a + b; }
    }
}
"#;

const C: &str = r#"#include <stdio.h>

/* A point. */
struct point {
    int x;
};

typedef struct {
    int y;
} pair_t;

union value { int i; float f; };

enum color { RED, GREEN };

struct point make(int x);

static int *find(void) {
    return 0;
}

#ifdef DEBUG
void trace(const char *msg) {
    puts(msg);
}
#endif

int main(int argc, char **argv) {
    return 0;
}
"#;

const CPP: &str = r#"#include <vector>

namespace geo {

class Shape {
public:
    virtual ~Shape() = default;
    virtual double area() const = 0;
    int sides() const { return 0; }
    bool operator==(const Shape& o) const { return true; }
};

struct Point {
    int x;
    int norm() const { return x; }
};

template <typename T>
T maxOf(T a, T b) {
    return a > b ? a : b;
}

double Shape::area() const { return 1.0; }

enum class Color { Red };

namespace {
void hidden() {}
}
}

extern "C" void cfunc() {}
"#;

const MARKDOWN: &str = r#"Intro text.

# Guide

See below.

## Install

```sh
# not a heading
```

## Use

Run it.
"#;

const SCRIPT: &str = "#!/usr/bin/env python3\n\ndef run():\n    print(1)\n";

const CONSTS_ONLY: &str = "pub const A: u32 = 1;\npub const B: u32 = 2;\n";

/// 70 lines with blank lines at 50 and 65.
fn notes() -> String {
    (1..=70)
        .map(|i| match i {
            50 | 65 => "\n".to_owned(),
            _ => format!("note {i}\n"),
        })
        .collect()
}

/// One fixture file and what the index must hold for it.
struct Case {
    path: &'static str,
    content: String,
    lang: &'static str,
    slice_type: &'static str,
    slice_language: Option<&'static str>,
    /// (symbol, kind, first line, last line), in file order.
    spans: &'static [(&'static str, &'static str, u32, u32)],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            path: "src/shapes.rs",
            content: RUST.to_owned(),
            lang: "rust",
            slice_type: "code",
            slice_language: Some("rust"),
            spans: &[
                ("Point", "struct", 6, 9),
                ("Point", "impl", 11, 20),
                ("Point::new", "method", 13, 15),
                ("Point::x", "method", 17, 19),
                ("fmt::Display for Point", "impl", 22, 26),
                ("Point::fmt", "method", 23, 25),
                ("Shape", "trait", 28, 33),
                ("Shape::name", "method", 30, 32),
                ("Color", "enum", 35, 38),
                ("square", "macro", 40, 44),
                ("geometry::distance", "function", 47, 49),
                ("main", "function", 52, 55),
            ],
        },
        Case {
            path: "app/greeter.py",
            content: PYTHON.to_owned(),
            lang: "python",
            slice_type: "code",
            slice_language: Some("python"),
            spans: &[
                ("add", "function", 6, 11),
                ("Greeter", "class", 14, 33),
                ("Greeter.__init__", "method", 19, 20),
                ("Greeter.hello", "method", 23, 26),
                ("Greeter.fetch", "method", 28, 29),
                ("Greeter.Config", "class", 31, 33),
                ("Greeter.Config.load", "method", 32, 33),
                ("cli", "function", 37, 38),
            ],
        },
        Case {
            path: "web/animal.js",
            content: JAVASCRIPT.to_owned(),
            lang: "javascript",
            slice_type: "code",
            slice_language: Some("javascript"),
            spans: &[
                ("greet", "function", 4, 6),
                ("Animal", "class", 8, 19),
                ("Animal.constructor", "method", 9, 11),
                ("Animal.speak", "method", 13, 15),
                ("Animal.handler", "method", 17, 17),
                ("double", "function", 21, 21),
                ("ids", "function", 23, 25),
            ],
        },
        Case {
            path: "web/shapes.ts",
            content: TYPESCRIPT.to_owned(),
            lang: "typescript",
            slice_type: "code",
            slice_language: Some("typescript"),
            spans: &[
                ("Shape", "interface", 1, 3),
                ("Color", "enum", 5, 8),
                ("Base", "class", 12, 21),
                ("Base.constructor", "method", 14, 16),
                ("Base.area", "method", 17, 19),
                ("make", "function", 23, 25),
                ("Geo.inside", "function", 28, 28),
            ],
        },
        Case {
            path: "web/App.tsx",
            content: TSX.to_owned(),
            lang: "tsx",
            slice_type: "code",
            slice_language: Some("typescript"),
            spans: &[
                ("App", "function", 3, 5),
                ("Button", "function", 7, 7),
                ("Widget", "class", 9, 13),
                ("Widget.render", "method", 10, 12),
            ],
        },
        Case {
            path: "server/server.go",
            content: GO.to_owned(),
            lang: "go",
            slice_type: "code",
            slice_language: Some("go"),
            spans: &[
                ("Server", "struct", 6, 8),
                ("Handler", "interface", 10, 12),
                ("ID", "type", 14, 14),
                ("Pair", "struct", 17, 17),
                ("Name", "type", 18, 18),
                ("Server.Start", "method", 22, 24),
                ("List.Len", "method", 26, 26),
                ("Main", "function", 28, 30),
            ],
        },
        Case {
            path: "src/Outer.java",
            content: JAVA.to_owned(),
            lang: "java",
            slice_type: "code",
            slice_language: Some("java"),
            spans: &[
                ("Outer", "class", 4, 33),
                ("Outer.Outer", "constructor", 7, 9),
                ("Outer.run", "method", 11, 12),
                ("Outer.Inner", "class", 14, 16),
                ("Outer.Inner.deep", "method", 15, 15),
                ("Outer.Callback", "interface", 18, 22),
                ("Outer.Callback.done", "method", 21, 21),
                ("Outer.Kind", "enum", 24, 28),
                ("Outer.Kind.code", "method", 27, 27),
                ("Outer.Pair", "record", 30, 32),
                ("Outer.Pair.sum", "method", 31, 31),
            ],
        },
        Case {
            path: "lib/point.c",
            content: C.to_owned(),
            lang: "c",
            slice_type: "code",
            slice_language: Some("c"),
            spans: &[
                ("point", "struct", 4, 6),
                ("pair_t", "struct", 8, 10),
                ("value", "union", 12, 12),
                ("color", "enum", 14, 14),
                ("find", "function", 18, 20),
                ("trace", "function", 23, 25),
                ("main", "function", 28, 30),
            ],
        },
        Case {
            path: "lib/shape.cpp",
            content: CPP.to_owned(),
            lang: "cpp",
            slice_type: "code",
            slice_language: Some("cpp"),
            spans: &[
                ("geo::Shape", "class", 5, 11),
                ("geo::Shape::~Shape", "method", 7, 7),
                ("geo::Shape::sides", "method", 9, 9),
                ("geo::Shape::operator==", "method", 10, 10),
                ("geo::Point", "struct", 13, 16),
                ("geo::Point::norm", "method", 15, 15),
                ("geo::maxOf", "function", 18, 21),
                ("geo::Shape::area", "function", 23, 23),
                ("geo::Color", "enum", 25, 25),
                ("geo::hidden", "function", 28, 28),
                ("cfunc", "function", 32, 32),
            ],
        },
        Case {
            path: "docs/guide.md",
            content: MARKDOWN.to_owned(),
            lang: "markdown",
            slice_type: "docs",
            slice_language: None,
            spans: &[
                ("guide", "section", 1, 1),
                ("Guide", "section", 3, 5),
                ("Guide > Install", "section", 7, 11),
                ("Guide > Use", "section", 13, 15),
            ],
        },
        Case {
            path: "bin/tool",
            content: SCRIPT.to_owned(),
            lang: "python",
            slice_type: "code",
            slice_language: Some("python"),
            spans: &[("run", "function", 3, 4)],
        },
        Case {
            path: "src/consts.rs",
            content: CONSTS_ONLY.to_owned(),
            lang: "rust",
            slice_type: "code",
            slice_language: Some("rust"),
            spans: &[("consts.rs:1-2", "window", 1, 2)],
        },
        Case {
            path: "notes/todo.txt",
            content: notes(),
            lang: "text",
            slice_type: "docs",
            slice_language: None,
            spans: &[
                ("todo.txt:1-64", "window", 1, 64),
                ("todo.txt:66-70", "window", 66, 70),
            ],
        },
    ]
}

#[test]
fn every_language_splits_into_the_expected_spans() {
    let cases = cases();
    let files: Vec<(&str, &str)> = cases.iter().map(|c| (c.path, c.content.as_str())).collect();
    let repo = Repo::with(&files);
    let report = repo.index();
    assert_eq!(report.files.added, cases.len() as u64, "{report:?}");
    for case in &cases {
        let rows = repo.spans(Some(case.path));
        let got: Vec<(&str, &str, u32, u32)> = rows
            .iter()
            .map(|s| (s.symbol.as_str(), s.kind.as_str(), s.start_line, s.end_line))
            .collect();
        assert_eq!(got, case.spans, "spans of {}", case.path);
        for row in &rows {
            check_row(row, case);
        }
    }
}

/// The row's lines are where its bytes are, its hash is LLMC's hash of those bytes, and the
/// classification is the file's.
fn check_row(row: &SpanRow, case: &Case) {
    let Case {
        content,
        lang,
        slice_type,
        slice_language,
        ..
    } = case;
    let what = format!("{} {}", row.path, row.symbol);
    assert_eq!(row.lang, *lang, "{what}");
    assert!(
        row.byte_start < row.byte_end && row.byte_end <= content.len(),
        "{what}"
    );
    assert_eq!(line_at(content, row.byte_start), row.start_line, "{what}");
    assert_eq!(line_at(content, row.byte_end - 1), row.end_line, "{what}");
    let bytes = &content.as_bytes()[row.byte_start..row.byte_end];
    assert_eq!(row.span_hash, span_hash(lang, bytes), "{what}");
    assert_eq!(row.slice_type.as_deref(), Some(*slice_type), "{what}");
    assert_eq!(row.slice_language.as_deref(), *slice_language, "{what}");
    let confidence = if *slice_type == "other" { 0.0 } else { 1.0 };
    assert_eq!(row.classifier_confidence, Some(confidence), "{what}");
}

#[test]
fn a_span_is_exactly_the_definition_and_hashes_like_llmc() {
    // LLMC takes the syntax node: the decorator and the preceding lines are not part of it.
    let source = "import os\n\n@cache\ndef add(a, b):\n    return a + b\n";
    let repo = Repo::with(&[("calc.py", source)]);
    repo.index();
    let span = repo.span("calc.py", "add");
    let definition = "def add(a, b):\n    return a + b";
    assert_eq!(&source[span.byte_start..span.byte_end], definition);
    assert_eq!(span.span_hash, span_hash("python", definition.as_bytes()));
}

#[test]
fn doc_comments_and_docstrings_become_hints() {
    let repo = Repo::with(&[
        ("src/shapes.rs", RUST),
        ("app/greeter.py", PYTHON),
        ("web/animal.js", JAVASCRIPT),
        ("server/server.go", GO),
        ("src/Outer.java", JAVA),
        ("lib/point.c", C),
        ("docs/guide.md", MARKDOWN),
    ]);
    repo.index();
    let cases = [
        ("src/shapes.rs", "Point", Some("A point in the plane.")),
        ("src/shapes.rs", "Point::new", Some("Makes a point.")),
        ("src/shapes.rs", "Point::x", None),
        ("app/greeter.py", "add", Some("Adds two numbers.")),
        ("app/greeter.py", "Greeter", Some("Greets people.")),
        ("web/animal.js", "greet", Some("Greets by name.")),
        (
            "server/server.go",
            "Server",
            Some("Server serves requests."),
        ),
        (
            "server/server.go",
            "Server.Start",
            Some("Start starts the server."),
        ),
        ("src/Outer.java", "Outer", Some("An outer class.")),
        ("lib/point.c", "point", Some("A point.")),
        ("docs/guide.md", "Guide", Some("See below.")),
    ];
    for (path, symbol, hint) in cases {
        assert_eq!(
            repo.span(path, symbol).doc_hint.as_deref(),
            hint,
            "{path} {symbol}"
        );
    }
}
