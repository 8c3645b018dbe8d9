//! The sans-IO protocol core (issue 13): messages and the node state machine.
