//! The cluster store: gmond's view of every host and metric, as a state machine with time as
//! input. (Being written; see its issue.)
