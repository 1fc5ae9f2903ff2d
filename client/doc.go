// Package client is the Go client of Sluice's HTTP API (package api): it
// registers, lists, pauses and removes handlers, publishes messages, lists
// and creates topics, and asks a node whether it is healthy and ready.
//
// A Client is safe for concurrent use. Every method takes a context; a
// request that gets no HTTP answer returns an *UnreachableError, and a
// request the server refuses returns an *APIError with the status code, the
// server's message and the offending field, if any.
package client
