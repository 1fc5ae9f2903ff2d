//go:build !linux

package main

import "time"

// machineBusy is not measured on this platform.
func machineBusy() time.Duration { return 0 }
