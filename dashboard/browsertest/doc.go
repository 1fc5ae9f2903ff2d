// Package browsertest drives the dashboard in a real headless Chromium
// (chromedp) against a node running in the test. It is a module of its own
// so that the browser driver is no dependency of Sluice itself; `make test`
// runs it after the main module.
package browsertest
