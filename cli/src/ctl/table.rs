//! Aligned columns, as `kubectl get` prints them.

/// A table: a header and rows, printed with two spaces between columns.
#[derive(Debug, Default)]
pub(super) struct Table {
    header: Vec<String>,
    right_aligned: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers, every column left-aligned.
    pub(super) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            right_aligned: vec![false; header.len()],
            rows: Vec::new(),
        }
    }

    /// Aligns column `index` (from 0) to the right, for numbers.
    pub(super) fn right_align(mut self, index: usize) -> Self {
        if let Some(r) = self.right_aligned.get_mut(index) {
            *r = true;
        }
        self
    }

    /// Adds a row; an empty cell prints as `-` so that columns stay
    /// countable.
    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| if c.is_empty() { "-".to_owned() } else { c })
                .collect(),
        );
    }

    /// The text, one line per row after the header, no trailing spaces.
    pub(super) fn render(&self) -> String {
        let widths = self.widths();
        let mut text = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, cell)| self.pad(cell, i, widths.get(i).copied().unwrap_or(0)))
                .collect();
            text += cells.join("  ").trim_end();
            text.push('\n');
        }
        text
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths = vec![0; self.header.len()];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        widths
    }

    fn pad(&self, cell: &str, index: usize, width: usize) -> String {
        if self.right_aligned.get(index).copied().unwrap_or(false) {
            format!("{cell:>width$}")
        } else {
            format!("{cell:<width$}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut t = Table::new(&["KIND", "NAMESPACE", "NAME", "GENERATION"]).right_align(3);
        t.row(vec![
            "GlobalNetworkPolicy".into(),
            String::new(),
            "allow-web".into(),
            "12".into(),
        ]);
        t.row(vec![
            "NetworkPolicy".into(),
            "shop".into(),
            "db".into(),
            "3".into(),
        ]);
        assert_eq!(
            t.render(),
            "KIND                 NAMESPACE  NAME       GENERATION\n\
             GlobalNetworkPolicy  -          allow-web          12\n\
             NetworkPolicy        shop       db                  3\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(Table::new(&["NAME", "VALUE"]).render(), "NAME  VALUE\n");
    }
}
