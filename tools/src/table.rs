//! Output: aligned text tables for people, JSON for scripts (`--json`).

use serde_json::Value;

/// A table of rows under named columns, printed with columns aligned.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds one row; it must have one cell per column.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        let row: Vec<String> = cells.into_iter().map(|c| c.to_string()).collect();
        assert_eq!(
            row.len(),
            self.headers.len(),
            "a row needs one cell per column"
        );
        self.rows.push(row);
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text: a header line, then rows, columns separated by two spaces; the last
    /// column is not padded, so lines carry no trailing blanks.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let last = line.len() - 1;
            for (i, cell) in line.iter().enumerate() {
                out.push_str(cell);
                if i < last {
                    let pad = widths[i] - cell.chars().count() + 2;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// What a command prints: a table (or free text) for people, and the same facts as JSON.
pub struct Output {
    /// Text for people.
    pub text: String,
    /// The same facts for `--json`.
    pub json: Value,
}

impl Output {
    /// Output whose text is a table.
    pub fn table(table: &Table, json: Value) -> Self {
        Output {
            text: table.render(),
            json,
        }
    }

    /// Output whose text is one message line.
    pub fn message(text: impl Into<String>, json: Value) -> Self {
        let mut text = text.into();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Output { text, json }
    }

    /// Prints the text or the JSON (pretty, one document) to stdout.
    pub fn print(&self, json: bool) {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&self.json).expect("JSON values encode")
            );
        } else {
            print!("{}", self.text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let mut t = Table::new(&["TOPIC", "PARTITIONS", "ID"]);
        t.row(["orders", "3", "a"]);
        t.row(["a-much-longer-name", "16", "b"]);
        assert_eq!(
            t.render(),
            "TOPIC               PARTITIONS  ID\n\
             orders              3           a\n\
             a-much-longer-name  16          b\n"
        );
    }

    #[test]
    fn empty_table_prints_its_header() {
        let t = Table::new(&["A", "B"]);
        assert!(t.is_empty());
        assert_eq!(t.render(), "A  B\n");
    }

    #[test]
    fn wide_characters_count_once() {
        let mut t = Table::new(&["K", "V"]);
        t.row(["é", "1"]);
        assert_eq!(t.render(), "K  V\né  1\n");
    }

    #[test]
    #[should_panic(expected = "one cell per column")]
    fn short_rows_are_a_bug() {
        Table::new(&["A", "B"]).row(["x"]);
    }
}
