package kproto

import "errors"

// Errors returned (wrapped with %w) by the parsing functions and by Serve. Any
// of them ends the connection: Kafka closes a connection rather than answer a
// request it cannot read.
var (
	// ErrIdle: no request began within the idle timeout.
	ErrIdle = errors.New("kproto: connection idle")
	// ErrFrameTooLarge: a frame's size prefix is above the configured maximum.
	ErrFrameTooLarge = errors.New("kproto: frame too large")
	// ErrNegativeSize: a frame's size prefix is negative.
	ErrNegativeSize = errors.New("kproto: negative frame size")
	// ErrUnknownAPI: the API key is unknown to kmsg or not registered.
	ErrUnknownAPI = errors.New("kproto: unknown or unregistered API key")
	// ErrUnsupportedVersion: the request's version is outside the
	// registered range and cannot be answered with UNSUPPORTED_VERSION.
	ErrUnsupportedVersion = errors.New("kproto: unsupported API version")
	// ErrMalformed: the request header or body does not decode.
	ErrMalformed = errors.New("kproto: malformed request")
	// ErrBadResponse: a handler answered with a response of another API, a
	// programming error that would desynchronise the client.
	ErrBadResponse = errors.New("kproto: response does not match request")
	// ErrClosedByHandler: a handler answered with CloseConnection.
	ErrClosedByHandler = errors.New("kproto: connection closed by the request's handler")

	// errWriterEnded stops the read loop when the write loop has failed;
	// Serve reports the write loop's error instead.
	errWriterEnded = errors.New("kproto: write loop ended")
)
