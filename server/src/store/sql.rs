//! Raw SQL for the statements SeaORM's query builder cannot say (LATERAL
//! joins, UPDATE … FROM, array parameters), with the backend's placeholders.

use sea_orm::{DbBackend, Statement, Value, sea_query::ArrayType};

/// SQL text with bound values and the backend's placeholders (`$n` for
/// PostgreSQL, `?` for SQLite).
pub(crate) struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(backend: DbBackend) -> Self {
        Self { backend, text: String::new(), values: Vec::new() }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        match self.backend {
            DbBackend::Postgres => {
                let n = self.values.len();
                self.text.push_str(&format!("${n}"));
            }
            _ => self.text.push('?'),
        }
        self
    }

    /// `values` as one array parameter (PostgreSQL only).
    pub(crate) fn bind_array<V: Into<Value>>(&mut self, values: impl IntoIterator<Item = V>) -> &mut Self {
        let values: Vec<Value> = values.into_iter().map(Into::into).collect();
        let kind = values.first().map_or(ArrayType::String, Value::array_type);
        self.bind(Value::Array(kind, Some(Box::new(values))))
    }

    /// `column IN (values)`. On PostgreSQL the list is one array parameter
    /// (`= ANY($n)`): the statement's text stays the same whatever the
    /// list's length, so its prepared plan is reused instead of planning a
    /// thousand parameters on every call. SQLite has no arrays and gets a
    /// placeholder per value. `values` must not be empty.
    pub(crate) fn in_list<V: Into<Value>>(&mut self, column: &str, values: impl IntoIterator<Item = V>) -> &mut Self {
        let values: Vec<Value> = values.into_iter().map(Into::into).collect();
        self.text.push_str(column);
        if self.backend == DbBackend::Postgres {
            self.text.push_str(" = ANY(");
            self.bind_array(values);
        } else {
            self.text.push_str(" IN (");
            for (i, value) in values.into_iter().enumerate() {
                if i > 0 {
                    self.text.push_str(", ");
                }
                self.bind(value);
            }
        }
        self.text.push(')');
        self
    }

    pub(crate) fn statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}
