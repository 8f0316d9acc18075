//! The page-size guard: a connection's `first` above the limit is refused
//! when the query is parsed, before any resolver runs (depth and complexity
//! are async-graphql's own limits, checked at validation, also before).

use std::sync::Arc;

use async_graphql::{
    ErrorExtensionValues, Name, Positioned, ServerError, ServerResult, Value, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::{ExecutableDocument, Selection, SelectionSet, VariableDefinition},
};

/// Refuses `first` above `max` anywhere in a query.
pub struct PageSizes {
    max: i32,
}

impl PageSizes {
    /// A guard with limit `max`.
    pub fn new(max: i32) -> Self {
        Self { max }
    }
}

impl ExtensionFactory for PageSizes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PageSizeGuard { max: self.max })
    }
}

struct PageSizeGuard {
    max: i32,
}

#[async_graphql::async_trait::async_trait]
impl Extension for PageSizeGuard {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        for (_, operation) in document.operations.iter() {
            let defaults = &operation.node.variable_definitions;
            self.check(&operation.node.selection_set.node, variables, defaults)?;
        }
        for fragment in document.fragments.values() {
            // A fragment's variables are those of the operations using it.
            for (_, operation) in document.operations.iter() {
                self.check(&fragment.node.selection_set.node, variables, &operation.node.variable_definitions)?;
            }
        }
        Ok(document)
    }
}

impl PageSizeGuard {
    fn check(
        &self,
        set: &SelectionSet,
        variables: &Variables,
        definitions: &[Positioned<VariableDefinition>],
    ) -> ServerResult<()> {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    for (name, value) in &field.node.arguments {
                        if name.node != "first" {
                            continue;
                        }
                        let first = value
                            .node
                            .clone()
                            .into_const_with(|var| {
                                Ok::<_, ()>(variable(&var, variables, definitions).unwrap_or(Value::Null))
                            })
                            .ok();
                        if let Some(Value::Number(n)) = first
                            && n.as_i64().is_some_and(|n| n > i64::from(self.max))
                        {
                            let mut error = ServerError::new(
                                format!("first: {n} is above the page limit of {}", self.max),
                                Some(value.pos),
                            );
                            let mut extensions = ErrorExtensionValues::default();
                            extensions.set("code", "PAGE_SIZE_LIMIT");
                            error.extensions = Some(extensions);
                            return Err(error);
                        }
                    }
                    self.check(&field.node.selection_set.node, variables, definitions)?;
                }
                Selection::InlineFragment(fragment) => {
                    self.check(&fragment.node.selection_set.node, variables, definitions)?;
                }
                Selection::FragmentSpread(_) => {}
            }
        }
        Ok(())
    }
}

/// A variable's value: given, or its default.
fn variable(name: &Name, variables: &Variables, definitions: &[Positioned<VariableDefinition>]) -> Option<Value> {
    if let Some(value) = variables.get(name) {
        return Some(value.clone());
    }
    definitions
        .iter()
        .find(|d| d.node.name.node == *name)
        .and_then(|d| d.node.default_value.as_ref())
        .map(|v| v.node.clone())
}
