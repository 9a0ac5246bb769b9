package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"unicode"

	"github.com/alecthomas/kong"
	"github.com/pubg1/pubg1/broker"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type versionCmd struct {
	Verbose bool `short:"v" help:"Also list the Kafka APIs and versions the broker supports."`
}

func (c *versionCmd) Run() error {
	printVersion(stdout, c.Verbose)
	return nil
}

// versionFlag is --version: it prints the version and exits before any
// command runs.
type versionFlag bool

func (versionFlag) BeforeReset(app *kong.Kong) error {
	printVersion(app.Stdout, false)
	app.Exit(0)
	return nil
}

// printVersion prints what the build info knows of this binary: the module
// version ("devel" for a build from a working tree), the commit and its
// time, and the Go version; verbose adds the supported Kafka APIs.
func printVersion(w io.Writer, verbose bool) {
	version, revision, at, modified := moduleVersion(), "", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	fmt.Fprintf(w, "pubg1 %s\n", version)
	if revision != "" {
		if modified {
			revision += " (modified)"
		}
		fmt.Fprintf(w, "commit %s\n", revision)
	}
	if at != "" {
		fmt.Fprintf(w, "commit time %s\n", at)
	}
	fmt.Fprintf(w, "go %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if !verbose {
		return
	}
	fmt.Fprintln(w, "\nKafka APIs (key name min-max):")
	w2 := tableOn(w)
	for _, api := range broker.SupportedAPIs() {
		fmt.Fprintf(w2, "%d\t%s\t%d-%d\n", api.ApiKey, kmsg.NameForKey(api.ApiKey), api.MinVersion, api.MaxVersion)
	}
	_ = w2.Flush()
}

// moduleVersion is the module version of this binary, "devel" for a build
// from a working tree.
func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
	}
	return "devel"
}

// softwareVersion is moduleVersion as KIP-511 allows a client to name its
// version in ApiVersions: letters, digits, '.' and '-'.
func softwareVersion() string {
	return strings.Trim(strings.Map(func(r rune) rune {
		if r == '.' || r == '-' || unicode.IsDigit(r) || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') {
			return r
		}
		return '-'
	}, moduleVersion()), ".-")
}
