//! The DARTS text form of a genotype, as DARTS and SNAS log it and as
//! `genotypes.py` writes it:
//!
//! ```text
//! Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=range(2, 6),
//!          reduce=[...], reduce_concat=range(2, 6))
//! ```
//!
//! Also read:
//! * any `name = ` prefix (`genotype = `, `genotype_edge_all = `, `DARTS_V2 = `)
//!   and any constructor name; a whole DARTS log line (text before
//!   `Genotype(` is skipped); positional arguments in namedtuple order;
//! * `normal_concat=[2, 3, 4, 5]` and `list(range(2, 6))`; double quotes;
//!   unquoted op names; any whitespace and newlines; trailing commas;
//! * the bare assignments the spec prints (`normal = [...] reduce = [...]`,
//!   concat then defaults to all nodes);
//! * `|` between entries of a flat list to mark node blocks (spec §5.1);
//! * a nested list with one list per node, `normal=[[('sep_5', 1), ('ident', 0)], [...]]`:
//!   what this module writes for cells that are neither of the flat forms;
//! * the BayesNAS notation of spec §4.9: `normal: n0 ← (sep_5, 1), (sep_5, 0) n1 ← ...`
//!   (`<-` works too, bullets `*`/`-` are ignored).
//!
//! A flat list is split into nodes from the number of intermediate nodes
//! `steps = max(concat) - 1`: `2·steps` entries are DARTS pairs (entries 2i,
//! 2i+1 feed node i); `steps·(steps+3)/2` entries are SNAS `edge_all` blocks of
//! 2, 3, 4, ... entries. Without a concat a flat list is read as pairs.

use super::{default_concat, did_you_mean, Cell, Edge, Genotype, MAX_NODES};
use anyhow::{anyhow, bail, Result};

// ---------------------------------------------------------------- writing

pub(super) fn write(g: &Genotype) -> String {
    format!(
        "Genotype(normal={}, normal_concat={}, reduce={}, reduce_concat={})",
        write_entries(&g.normal),
        write_concat(&g.normal.concat),
        write_entries(&g.reduce),
        write_concat(&g.reduce.concat)
    )
}

fn write_edge(e: &Edge) -> String {
    // Python's repr of a str without quotes or backslashes in it.
    let escaped = e.op.replace('\\', "\\\\").replace('\'', "\\'");
    format!("('{escaped}', {})", e.input)
}

/// Flat when the flat list reads back as the same nodes, nested otherwise.
fn write_entries(cell: &Cell) -> String {
    let steps_from_concat = cell.concat.iter().max().map_or(0, |m| m.saturating_sub(1));
    let flat = steps_from_concat == cell.steps() && (cell.is_pairs() || cell.is_edge_all());
    let join = |edges: &[Edge]| edges.iter().map(write_edge).collect::<Vec<_>>().join(", ");
    if flat {
        format!("[{}]", join(&cell.nodes.concat()))
    } else {
        let nodes: Vec<String> = cell
            .nodes
            .iter()
            .map(|n| format!("[{}]", join(n)))
            .collect();
        format!("[{}]", nodes.join(", "))
    }
}

fn write_concat(concat: &[usize]) -> String {
    if !concat.is_empty() && concat == default_concat(concat.len()).as_slice() {
        format!("range(2, {})", 2 + concat.len())
    } else {
        let items: Vec<String> = concat.iter().map(|c| c.to_string()).collect();
        format!("[{}]", items.join(", "))
    }
}

// ---------------------------------------------------------------- tokens

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(usize),
    Punct(char),
    Arrow,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Str(s) => format!("the string '{s}'"),
            Tok::Int(n) => format!("the number {n}"),
            Tok::Punct(c) => format!("'{c}'"),
            Tok::Arrow => "'←'".into(),
            Tok::End => "the end of the text".into(),
        }
    }
}

struct Lexer<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize)>, // token and its byte offset
}

/// "line L, column C" of a byte offset, plus the line with a caret under it.
fn locate(src: &str, offset: usize) -> String {
    let before = &src[..offset.min(src.len())];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let col = before[line_start..].chars().count() + 1;
    let line = src[line_start..].lines().next().unwrap_or("");
    // Long log lines: show a window around the column.
    let chars: Vec<char> = line.chars().collect();
    let from = (col - 1).saturating_sub(40);
    let to = (col - 1 + 40).min(chars.len());
    let snippet: String = chars[from..to].iter().collect();
    let lead = if from > 0 { "..." } else { "" };
    let caret_pad = " ".repeat(lead.len() + (col - 1 - from));
    format!("line {line_no}, column {col}\n    {lead}{snippet}\n    {caret_pad}^")
}

/// Tokens of `src[start..]`, with offsets into the whole of `src`.
fn lex(src: &str, start: usize) -> Result<Lexer<'_>> {
    let mut toks = Vec::new();
    let mut it = src[start..]
        .char_indices()
        .map(|(p, c)| (p + start, c))
        .peekable();
    while let Some(&(pos, c)) = it.peek() {
        if c.is_whitespace() {
            it.next();
        } else if c == '#' {
            // Python comment: skip to the end of the line.
            while it.peek().is_some_and(|&(_, c)| c != '\n') {
                it.next();
            }
        } else if c == '\'' || c == '"' {
            it.next();
            let mut s = String::new();
            loop {
                match it.next() {
                    Some((_, q)) if q == c => break,
                    Some((_, '\\')) => match it.next() {
                        Some((_, e)) => s.push(e),
                        None => break,
                    },
                    Some((_, '\n')) | None => {
                        bail!("{}: this string is not closed with {c}", locate(src, pos))
                    }
                    Some((_, ch)) => s.push(ch),
                }
            }
            toks.push((Tok::Str(s), pos));
        } else if c.is_ascii_digit() {
            let mut end = pos;
            while let Some(&(p, d)) = it.peek() {
                if !d.is_ascii_digit() {
                    break;
                }
                end = p + d.len_utf8();
                it.next();
            }
            let n = src[pos..end]
                .parse::<usize>()
                .map_err(|_| anyhow!("{}: number too large", locate(src, pos)))?;
            toks.push((Tok::Int(n), pos));
        } else if c.is_alphanumeric() || c == '_' {
            let mut end = pos;
            while let Some(&(p, d)) = it.peek() {
                if !(d.is_alphanumeric() || d == '_' || d == '.') {
                    break;
                }
                end = p + d.len_utf8();
                it.next();
            }
            toks.push((Tok::Ident(src[pos..end].to_string()), pos));
        } else if c == '←' {
            it.next();
            toks.push((Tok::Arrow, pos));
        } else if c == '<' {
            it.next();
            if it.peek().is_some_and(|&(_, d)| d == '-') {
                it.next();
                toks.push((Tok::Arrow, pos));
            } else {
                bail!(
                    "{}: unexpected '<' (an arrow is written '<-' or '←')",
                    locate(src, pos)
                );
            }
        } else if "()[]{},=|:*-;".contains(c) {
            it.next();
            toks.push((Tok::Punct(c), pos));
        } else {
            bail!(
                "{}: unexpected character '{c}' in a genotype",
                locate(src, pos)
            );
        }
    }
    toks.push((Tok::End, src.len()));
    Ok(Lexer { src, toks })
}

// ---------------------------------------------------------------- parsing

/// A cell's entries as written, before they are split into nodes.
enum Entries {
    /// A flat list, to be split into nodes by its length; `at` is where it starts.
    Flat { edges: Vec<Edge>, at: usize },
    /// Explicit nodes: a nested list, or a flat list with `|` between nodes.
    Nodes(Vec<Vec<Edge>>),
}

struct Parser<'a> {
    lx: Lexer<'a>,
    i: usize,
}

const KEYS: [&str; 4] = ["normal", "normal_concat", "reduce", "reduce_concat"];

impl<'a> Parser<'a> {
    fn peek(&self) -> &Tok {
        &self.lx.toks[self.i].0
    }
    fn peek_at(&self, k: usize) -> &Tok {
        let j = (self.i + k).min(self.lx.toks.len() - 1);
        &self.lx.toks[j].0
    }
    fn pos(&self) -> usize {
        self.lx.toks[self.i].1
    }
    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i + 1 < self.lx.toks.len() {
            self.i += 1;
        }
        t
    }
    fn err(&self, expected: &str) -> anyhow::Error {
        anyhow!(
            "cannot read the genotype at {}: expected {expected}, found {}",
            locate(self.lx.src, self.pos()),
            self.peek().describe()
        )
    }
    fn eat(&mut self, c: char) -> bool {
        if *self.peek() == Tok::Punct(c) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: char, what: &str) -> Result<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.err(what))
        }
    }
    fn int(&mut self, what: &str) -> Result<usize> {
        match self.peek() {
            Tok::Int(n) => {
                let n = *n;
                self.bump();
                Ok(n)
            }
            _ => Err(self.err(what)),
        }
    }

    fn genotype(&mut self) -> Result<Genotype> {
        // `name = ` prefix before a constructor call.
        if matches!(self.peek(), Tok::Ident(_))
            && *self.peek_at(1) == Tok::Punct('=')
            && matches!(self.peek_at(2), Tok::Ident(_))
            && *self.peek_at(3) == Tok::Punct('(')
        {
            self.i += 2;
        }
        let g = if self.lx.toks.iter().any(|(t, _)| *t == Tok::Arrow) {
            self.arrow_form()?
        } else if matches!(self.peek(), Tok::Ident(_)) && *self.peek_at(1) == Tok::Punct('(') {
            self.bump();
            self.bump();
            let g = self.arguments(Some(')'))?;
            self.expect(')', "')' closing the genotype")?;
            g
        } else if matches!(self.peek(), Tok::Ident(_)) && *self.peek_at(1) == Tok::Punct('=') {
            self.arguments(None)?
        } else {
            return Err(
                self.err("a genotype such as Genotype(normal=[('sep_conv_3x3', 0), ...], ...)")
            );
        };
        if *self.peek() != Tok::End {
            return Err(self.err("the end of the genotype"));
        }
        Ok(g)
    }

    /// `key=value` (or positional) arguments up to `close` (or the end).
    fn arguments(&mut self, close: Option<char>) -> Result<Genotype> {
        let mut values: [Option<(Value, usize)>; 4] = Default::default();
        let mut positional = 0usize;
        loop {
            let at_close = match close {
                Some(c) => *self.peek() == Tok::Punct(c),
                None => *self.peek() == Tok::End,
            };
            if at_close {
                break;
            }
            let slot = match (self.peek().clone(), self.peek_at(1).clone()) {
                (Tok::Ident(key), Tok::Punct('=')) => {
                    let Some(k) = KEYS.iter().position(|k| *k == key) else {
                        let hint = did_you_mean(&key, &KEYS)
                            .map(|s| format!(" (did you mean '{s}'?)"))
                            .unwrap_or_default();
                        return Err(self.err(&format!("one of {}{hint}", KEYS.join(", "))));
                    };
                    self.bump();
                    self.bump();
                    k
                }
                _ if close.is_some() && positional < 4 => {
                    positional += 1;
                    positional - 1
                }
                _ => return Err(self.err("'normal = [...]' or 'reduce = [...]'")),
            };
            if values[slot].is_some() {
                return Err(self.err(&format!(
                    "each of {} once; {} is given twice",
                    KEYS.join(", "),
                    KEYS[slot]
                )));
            }
            let at = self.pos();
            let v = if slot % 2 == 0 {
                Value::Entries(self.entries()?)
            } else {
                Value::Concat(self.concat()?)
            };
            values[slot] = Some((v, at));
            // Arguments are separated by commas (or, in the bare form, by whitespace).
            if !self.eat(',') && close.is_some() && *self.peek() != Tok::Punct(')') {
                return Err(self.err("',' or ')' after an argument"));
            }
            self.eat(';');
        }
        let [n, nc, r, rc] = values;
        let cell = |e: Option<(Value, usize)>,
                    c: Option<(Value, usize)>,
                    which: &str|
         -> Result<Cell> {
            let Some((Value::Entries(entries), _)) = e else {
                bail!(
                    "cannot read the genotype: '{which}' is missing; write {which}=[('op', input), ...]"
                )
            };
            let concat = match c {
                Some((Value::Concat(c), _)) => Some(c),
                _ => None,
            };
            self.to_cell(entries, concat, which)
        };
        Ok(Genotype {
            normal: cell(n, nc, "normal")?,
            reduce: cell(r, rc, "reduce")?,
        })
    }

    /// Splits the written entries into nodes (see the module docs).
    fn to_cell(&self, entries: Entries, concat: Option<Vec<usize>>, which: &str) -> Result<Cell> {
        match entries {
            Entries::Nodes(nodes) => {
                let concat = concat.unwrap_or_else(|| default_concat(nodes.len()));
                Ok(Cell { nodes, concat })
            }
            Entries::Flat { edges, at } => split_flat(edges, concat, which).map_err(|msg| {
                anyhow!(
                    "cannot read the genotype at {}: {msg}",
                    locate(self.lx.src, at)
                )
            }),
        }
    }

    /// `[(op, i), ...]`, `[(op, i), ... | (op, i), ...]` or `[[...], [...]]`.
    fn entries(&mut self) -> Result<Entries> {
        let at = self.pos();
        self.expect('[', "'[' starting a list of ('op', input) entries")?;
        if *self.peek() == Tok::Punct('[') {
            let mut nodes = Vec::new();
            while *self.peek() == Tok::Punct('[') {
                self.bump();
                nodes.push(self.edge_list(']')?);
                self.expect(']', "']' closing the node's list")?;
                if !self.eat(',') {
                    break;
                }
            }
            self.expect(']', "'[' starting a node's list or ']' closing the cell")?;
            return Ok(Entries::Nodes(nodes));
        }
        let mut blocks: Vec<Vec<Edge>> = vec![self.edge_list(']')?];
        while self.eat('|') {
            blocks.push(self.edge_list(']')?);
        }
        self.expect(']', "',', '|' or ']' after an entry")?;
        if blocks.len() == 1 {
            Ok(Entries::Flat {
                edges: blocks.concat(),
                at,
            })
        } else {
            Ok(Entries::Nodes(blocks))
        }
    }

    /// Comma-separated `(op, input)` tuples (a trailing comma is fine).
    fn tuples(&mut self) -> Result<Vec<Edge>> {
        let mut out = Vec::new();
        while *self.peek() == Tok::Punct('(') {
            out.push(self.edge()?);
            if !self.eat(',') {
                break;
            }
        }
        Ok(out)
    }

    /// [`Self::tuples`] that must stop right before `stop` or `|`.
    fn edge_list(&mut self, stop: char) -> Result<Vec<Edge>> {
        let out = self.tuples()?;
        if *self.peek() != Tok::Punct(stop) && *self.peek() != Tok::Punct('|') {
            return Err(self.err(&format!("an entry ('op', input), ',' or '{stop}'")));
        }
        Ok(out)
    }

    fn edge(&mut self) -> Result<Edge> {
        self.expect('(', "'(' starting an entry ('op', input)")?;
        let op = match self.peek() {
            Tok::Str(s) | Tok::Ident(s) => s.clone(),
            _ => return Err(self.err("an op name such as 'sep_conv_3x3'")),
        };
        self.bump();
        self.expect(',', "',' between the op name and its input index")?;
        let input =
            self.int("the input index of the entry (0 = c_{k-2}, 1 = c_{k-1}, 2 = node 0, ...)")?;
        self.eat(',');
        self.expect(')', "')' closing the entry")?;
        Ok(Edge { op, input })
    }

    /// `range(a, b)`, `range(b)`, `list(range(...))` or `[a, b, ...]`.
    fn concat(&mut self) -> Result<Vec<usize>> {
        match self.peek().clone() {
            Tok::Ident(f) if f == "list" => {
                self.bump();
                self.expect('(', "'(' after list")?;
                let c = self.concat()?;
                self.expect(')', "')' closing list(...)")?;
                Ok(c)
            }
            Tok::Ident(f) if f == "range" => {
                self.bump();
                self.expect('(', "'(' after range")?;
                let at = self.pos();
                let a = self.int("a number in range(start, end)")?;
                let (a, b) = if self.eat(',') {
                    (a, self.int("the end of range(start, end)")?)
                } else {
                    (0, a)
                };
                self.expect(')', "')' closing range(start, end)")?;
                if b > MAX_NODES + 2 {
                    bail!(
                        "cannot read the genotype at {}: range(..., {b}) is implausibly large (at most {} states)",
                        locate(self.lx.src, at),
                        MAX_NODES + 2
                    );
                }
                Ok((a..b).collect())
            }
            Tok::Punct('[') => {
                self.bump();
                let mut out = Vec::new();
                while let Tok::Int(n) = *self.peek() {
                    out.push(n);
                    self.bump();
                    if !self.eat(',') {
                        break;
                    }
                }
                self.expect(']', "a state index, ',' or ']' in the concat list")?;
                Ok(out)
            }
            _ => Err(self.err("range(2, 6) or a list such as [2, 3, 4, 5]")),
        }
    }

    /// The BayesNAS notation: `normal: n0 ← (op, i), ... n1 ← ... reduce: ...`.
    fn arrow_form(&mut self) -> Result<Genotype> {
        let mut cells: [Option<Vec<Vec<Edge>>>; 2] = [None, None];
        while *self.peek() != Tok::End {
            let slot = match self.peek() {
                Tok::Ident(s) if s == "normal" => 0,
                Tok::Ident(s) if s == "reduce" => 1,
                _ => return Err(self.err("'normal:' or 'reduce:' before a cell's node lines")),
            };
            if cells[slot].is_some() {
                return Err(self.err("each of 'normal:' and 'reduce:' once"));
            }
            self.bump();
            if !self.eat(':') {
                self.eat('=');
            }
            let mut nodes = Vec::new();
            loop {
                let bullet = self.eat('*') || self.eat('-');
                let expected = format!("n{}", nodes.len());
                match self.peek() {
                    Tok::Ident(s) if *s == expected => {}
                    _ if bullet
                        || matches!(self.peek(), Tok::Ident(s) if s.starts_with('n') && s[1..].parse::<usize>().is_ok()) =>
                    {
                        return Err(self.err(&format!(
                            "'{expected} ←' (nodes are listed in order from n0)"
                        )))
                    }
                    _ => break,
                }
                self.bump();
                if *self.peek() != Tok::Arrow {
                    return Err(self.err("'←' or '<-' after the node name"));
                }
                self.bump();
                let edges = if self.eat('[') {
                    let edges = self.edge_list(']')?;
                    self.expect(']', "']' closing the node's list")?;
                    edges
                } else {
                    // Without brackets the list simply ends at the next node line.
                    self.tuples()?
                };
                nodes.push(edges);
                self.eat(';');
            }
            if nodes.is_empty() {
                return Err(self.err("a node line such as 'n0 ← (sep_5, 1), (ident, 0)'"));
            }
            cells[slot] = Some(nodes);
        }
        let [normal, reduce] = cells;
        let cell = |n: Option<Vec<Vec<Edge>>>, which: &str| -> Result<Cell> {
            let nodes = n.ok_or_else(|| {
                anyhow!("cannot read the genotype: the '{which}:' cell is missing")
            })?;
            Ok(Cell {
                concat: default_concat(nodes.len()),
                nodes,
            })
        };
        Ok(Genotype {
            normal: cell(normal, "normal")?,
            reduce: cell(reduce, "reduce")?,
        })
    }
}

/// Splits a flat entry list into nodes by its length and the concat (see the
/// module docs); the error says what was expected.
#[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; the workspace allows 1.85
pub(super) fn split_flat(
    edges: Vec<Edge>,
    concat: Option<Vec<usize>>,
    which: &str,
) -> Result<Cell, String> {
    if let Some(big) = concat.iter().flatten().find(|&&c| c > MAX_NODES + 1) {
        return Err(format!(
            "{which}_concat names state {big}, implausibly large (at most {})",
            MAX_NODES + 1
        ));
    }
    let (steps, concat) = match concat {
        Some(c) => (c.iter().max().map_or(0, |m| m.saturating_sub(1)), c),
        None if edges.len() % 2 == 0 => (edges.len() / 2, default_concat(edges.len() / 2)),
        None => {
            return Err(format!(
                "{which} has {} entries, an odd number, and no {which}_concat; DARTS cells list \
                 two entries per node (give {which}_concat for other layouts)",
                edges.len()
            ))
        }
    };
    let nodes = if edges.len() == 2 * steps {
        edges.chunks(2).map(|c| c.to_vec()).collect()
    } else if edges.len() == steps * (steps + 3) / 2 {
        let mut rest = edges.as_slice();
        (0..steps)
            .map(|i| {
                let (block, tail) = rest.split_at(i + 2);
                rest = tail;
                block.to_vec()
            })
            .collect()
    } else {
        return Err(format!(
            "{which} has {} entries, which fit neither layout for {steps} intermediate nodes \
             (from {which}_concat {concat:?}): expected {} (two per node, DARTS) or {} (every \
             predecessor, SNAS edge_all); for other cells write one list per node, \
             [[('op', input), ...], ...]",
            edges.len(),
            2 * steps,
            steps * (steps + 3) / 2
        ));
    };
    Ok(Cell { nodes, concat })
}

enum Value {
    Entries(Entries),
    Concat(Vec<usize>),
}

pub(super) fn parse(s: &str) -> Result<Genotype> {
    // A pasted log line ("01/02 03:04:05 PM genotype = Genotype(...)"): start at the call.
    let start = s.find("Genotype(").unwrap_or(0);
    let lx = lex(s, start)?;
    Parser { lx, i: 0 }.genotype()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))";

    #[test]
    fn darts_line_round_trips_byte_for_byte() {
        let g = parse(V2).unwrap();
        assert_eq!(g.normal.nodes.len(), 4);
        assert_eq!(
            g.normal.nodes[3],
            vec![Edge::new("skip_connect", 0), Edge::new("dil_conv_3x3", 2)]
        );
        assert_eq!(g.reduce.concat, vec![2, 3, 4, 5]);
        assert_eq!(write(&g), V2);
    }

    #[test]
    fn accepts_prefix_quotes_lists_and_newlines() {
        let text = "genotype = Genotype(\n  normal=[(\"sep_conv_3x3\", 0), (\"sep_conv_3x3\", 1),\n ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2),],\n  normal_concat=[2, 3, 4, 5],\n  reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)],\n  reduce_concat=list(range(2, 6)),\n)\n";
        assert_eq!(parse(text).unwrap(), parse(V2).unwrap());
    }

    #[test]
    fn positional_arguments_in_namedtuple_order() {
        let text = "Genotype([('a', 0), ('b', 1)], [2], [('c', 1), ('d', 0)], range(2, 3))";
        let g = parse(text).unwrap();
        assert_eq!(
            g.normal.nodes,
            vec![vec![Edge::new("a", 0), Edge::new("b", 1)]]
        );
        assert_eq!(g.reduce.nodes[0][0].op, "c");
    }

    #[test]
    fn edge_all_list_is_split_in_blocks_of_2_3_4_5() {
        let entries: Vec<String> = (0..14).map(|k| format!("('op{k}', 0)")).collect();
        let text = format!(
            "Genotype(normal=[{}], normal_concat=range(2, 6), reduce=[{}], reduce_concat=range(2, 6))",
            entries.join(", "),
            entries.join(", ")
        );
        let g = parse(&text).unwrap();
        let sizes: Vec<usize> = g.normal.nodes.iter().map(|n| n.len()).collect();
        assert_eq!(sizes, vec![2, 3, 4, 5]);
        assert_eq!(g.normal.nodes[2][0].op, "op5");
        assert_eq!(write(&g), text);
    }

    #[test]
    fn general_cells_print_nested_and_read_back() {
        let g = Genotype {
            normal: Cell {
                nodes: vec![
                    vec![
                        Edge::new("sep_5", 1),
                        Edge::new("ident", 0),
                        Edge::new("max_pool", 0),
                    ],
                    vec![Edge::new("ident", 2)],
                ],
                concat: vec![2, 3],
            },
            reduce: Cell {
                nodes: vec![vec![], vec![Edge::new("x", 1)]],
                concat: vec![3],
            },
        };
        let text = write(&g);
        assert!(text.starts_with("Genotype(normal=[[('sep_5', 1), ('ident', 0), ('max_pool', 0)], [('ident', 2)]], normal_concat=range(2, 4)"), "{text}");
        assert!(
            text.contains("reduce=[[], [('x', 1)]], reduce_concat=[3]"),
            "{text}"
        );
        assert_eq!(parse(&text).unwrap(), g);
    }

    #[test]
    fn spec_forms_with_bars_unquoted_names_and_arrows() {
        let bars = "normal = [(sep_conv_3x3,0),(sep_conv_3x3,1) | (skip_connect,0),(dil_conv_3x3,1),(none,2)]\n reduce = [(max_pool_3x3,0) | (none,0)]";
        let g = parse(bars).unwrap();
        assert_eq!(g.normal.nodes.len(), 2);
        assert_eq!(g.normal.nodes[1][2], Edge::new("none", 2));
        assert_eq!(
            g.reduce.nodes,
            vec![
                vec![Edge::new("max_pool_3x3", 0)],
                vec![Edge::new("none", 0)]
            ]
        );
        assert_eq!(g.normal.concat, vec![2, 3]);

        let arrows = "normal:\n  * n0 ← (sep_5, 1), (sep_5, 0)\n  * n1 <- (ident, 2)\nreduce:\n  - n0 ← [(avg_pool, 0)]\n";
        let g = parse(arrows).unwrap();
        assert_eq!(
            g.normal.nodes,
            vec![
                vec![Edge::new("sep_5", 1), Edge::new("sep_5", 0)],
                vec![Edge::new("ident", 2)]
            ]
        );
        assert_eq!(g.reduce.nodes, vec![vec![Edge::new("avg_pool", 0)]]);
        assert_eq!(g.reduce.concat, vec![2]);
    }

    #[test]
    fn errors_name_line_column_and_expectation() {
        let bad = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3' 1)], normal_concat=range(2, 3), reduce=[], reduce_concat=[])";
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains("line 1, column 55"), "{e}");
        assert!(
            e.contains("expected ',' between the op name and its input index"),
            "{e}"
        );
        assert!(e.contains("found the number 1"), "{e}");

        let e = parse("Genotype(normal=[('a', 0)],\n normal_concta=range(2, 3))")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2, column 2"), "{e}");
        assert!(e.contains("did you mean 'normal_concat'"), "{e}");

        let e = parse("Genotype(normal=[('a', 0), ('a', 1), ('a', 0)], normal_concat=range(2, 4), reduce=[], reduce_concat=[])").unwrap_err().to_string();
        assert!(e.contains("normal has 3 entries"), "{e}");
        assert!(e.contains("expected 4 (two per node, DARTS) or 5"), "{e}");

        let e = parse("Genotype(normal=[('a', 0), ('b', 1)], normal_concat=range(2, 3))")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'reduce' is missing"), "{e}");

        let e = parse("Genotype(normal=[('a', 0), ('b', -1)])")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected the input index"), "{e}");

        let e = parse("Genotype(normal=[('a, 0)])").unwrap_err().to_string();
        assert!(e.contains("not closed"), "{e}");

        let e = parse("hello world").unwrap_err().to_string();
        assert!(e.contains("expected a genotype such as"), "{e}");

        let e = parse("Genotype(normal=[('a', 0), ('b', 1)], normal_concat=range(2, 3), reduce=[('a', 0), ('b', 1)]) trailing").unwrap_err().to_string();
        assert!(e.contains("expected the end of the genotype"), "{e}");
    }

    #[test]
    fn huge_numbers_are_errors_not_panics_or_allocations() {
        let e =
            parse("normal = [(a, 0), (b, 1)] normal_concat = range(2, 99999999999) reduce = []")
                .unwrap_err();
        assert!(e.to_string().contains("implausibly large"), "{e}");
        let e = parse(
            "normal = [(a, 0), (b, 1)] normal_concat = [2, 18446744073709551615] reduce = []",
        )
        .unwrap_err();
        assert!(e.to_string().contains("implausibly large"), "{e}");
        let e = parse("normal = [(a, 99999999999999999999999)] reduce = []").unwrap_err();
        assert!(e.to_string().contains("number too large"), "{e}");
    }

    #[test]
    fn odd_flat_list_without_concat_is_an_error() {
        let e = parse("normal = [(a, 0), (b, 1), (c, 0)] reduce = [(a, 0), (b, 1)]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("an odd number"), "{e}");
    }
}
