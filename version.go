package sluice

// Version is the build's version, set with -ldflags at release time.
var Version = "dev"
