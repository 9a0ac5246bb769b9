// Package compattests holds PubG1's end-to-end compatibility tests: each test
// starts real broker processes built from cmd/pubg1 and talks to them with
// real Kafka clients (franz-go, sarama, kcat; kafka-python and
// confluent-kafka through the scripts in python/, kafkajs through js/) and
// with hand-written frames over raw TCP. The package has no code of its own;
// everything is in its _test.go files and those scripts.
package compattests
