// Package handlers holds what a team registers with Sluice: the handler
// Spec (which topic, which invoker, how to order and how much to run at
// once), its strict parsing and validation, the Message a handler receives,
// and the Invokers that deliver a message to an HTTP endpoint or to a Go
// function compiled into the binary.
//
// The consumer engine (package consumers) decides when a message is invoked;
// this package decides how.
package handlers
