//! Model editing with the preservation–memorization family: requests, keys, values, C0
//! statistics, the closed-form solutions and their distribution over layers.

pub mod algorithm;
pub mod distribute;
pub mod editor;
pub mod keys;
pub mod layers;
pub mod memory;
pub mod nullspace;
pub mod objective;
pub mod presets;
pub mod prompts;
pub mod request;
pub mod stats;
pub mod templates;
pub mod tradeoff;
pub mod values;

pub use algorithm::{Algorithm, EditEvent, EditHparams, EditOutcome, apply_edits};
pub use distribute::{Dropped, LayerDelta, Preserved, Solver, distribute, drop_dependent_keys};
pub use editor::{EditPlan, EditReport, Editor, Overrides, TargetChange, Teaching, TemplateChoice, ValueOverrides};
pub use nullspace::NullSpace;
pub use objective::{Objective, Preservation, solve_delta};
pub use request::EditRequest;
pub use templates::{ContextTemplates, TemplateRecipe};
pub use values::{StepLoss, ValueHparams};
