//! Rules: what the user asked to be copied, and how a rule names it.

mod selector;

pub use selector::{layout_ref, parse_layout_ref, parse_namespace, parse_rule_ref, split_layout, RuleRef, Selector};
