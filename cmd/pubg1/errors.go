package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"unicode"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Every failing command ends with one line on stderr, "pubg1: <error>",
// and exit code 1; usage errors exit 2. errorLine builds that line.

// errorLine is err as one line an operator reads: the client library's
// wrappers dropped, a refused or timed-out connection said plainly, and the
// lines of joined errors put side by side.
func errorLine(err error) string {
	msg := err.Error()
	if cause := plainCause(err); cause != "" {
		// Keep what this program said before the client's own text.
		if i := strings.Index(msg, clientText(err)); i > 0 {
			msg = strings.TrimSuffix(msg[:i], "unable to dial: ") + cause
		} else {
			msg = cause
		}
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", "; ")), " ")
}

// clientText is the part of err's text that plainCause replaces: a
// franz-go shard error's, else a network error's, else a timeout's.
func clientText(err error) string {
	if se, ok := errors.AsType[*kadm.ShardErrors](err); ok {
		return se.Error()
	}
	if oe, ok := errors.AsType[*net.OpError](err); ok {
		return oe.Error()
	}
	return context.DeadlineExceeded.Error()
}

// plainCause says what really failed when err comes from the client
// library: which broker could not be reached and why, or that nothing
// answered in time. It is empty for other errors.
func plainCause(err error) string {
	if se, ok := errors.AsType[*kadm.ShardErrors](err); ok && len(se.Errs) > 0 {
		first := se.Errs[0]
		if c := plainCause(first.Err); c != "" {
			return c
		}
		return first.Err.Error()
	}
	if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Op == "dial" {
		addr := ""
		if oe.Addr != nil {
			addr = " " + oe.Addr.String()
		}
		switch {
		case errors.Is(oe, syscall.ECONNREFUSED):
			return "cannot reach broker" + addr + ": connection refused"
		case oe.Timeout():
			return "cannot reach broker" + addr + ": connection timed out"
		}
		return "cannot reach broker" + addr + ": " + innermost(oe).Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer before --timeout"
	}
	return ""
}

// innermost unwraps err as far as it goes.
func innermost(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

// kafkaError is a Kafka error code with its name and meaning, and whatever
// the broker's error message adds to them.
type kafkaError struct {
	err    *kerr.Error
	detail string
}

func (e *kafkaError) Error() string {
	s := e.err.Message + ": " + e.err.Description
	if e.detail != "" {
		s += " (" + e.detail + ")"
	}
	return s
}

func (e *kafkaError) Unwrap() error { return e.err }

// kafkaErr wraps err, the error a command got for what, with the broker's
// message when that says more than the Kafka error's name and meaning and
// what itself (brokers often restate the code: "topic already exists: topic
// 'demo' already exists").
func kafkaErr(what string, err error, brokerMsg string) error {
	return fmt.Errorf("%s: %w", what, kafkaErrAbout(what, err, brokerMsg))
}

// kafkaErrAbout is kafkaErr without what in front, for a row of a table
// that already names it.
func kafkaErrAbout(what string, err error, brokerMsg string) error {
	ke, ok := errors.AsType[*kerr.Error](err)
	if !ok {
		if brokerMsg != "" {
			return fmt.Errorf("%w (%s)", err, brokerMsg)
		}
		return err
	}
	known := words(ke.Message + " " + ke.Description + " " + what)
	var extra []string
	for _, part := range strings.Split(brokerMsg, ": ") {
		for w := range words(part) {
			if !known[w] {
				extra = append(extra, strings.TrimSpace(part))
				break
			}
		}
	}
	return &kafkaError{err: ke, detail: strings.Join(extra, ": ")}
}

// words is the set of lower-case words of s, underscores splitting words
// as spaces do.
func words(s string) map[string]bool {
	set := make(map[string]bool)
	for _, w := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '.' && r != '-'
	}) {
		if w = strings.Trim(w, ".-"); w != "" {
			set[w] = true
		}
	}
	return set
}

// rowError is a per-item error as the admin commands print it in their
// tables: a Kafka error by name and meaning, anything else as one line.
func rowError(err error) string {
	if err == nil {
		return "no answer"
	}
	if ke, ok := errors.AsType[*kafkaError](err); ok {
		return ke.Error()
	}
	if ke, ok := errors.AsType[*kerr.Error](err); ok {
		return (&kafkaError{err: ke}).Error()
	}
	return errorLine(err)
}
