//go:build tools

// Package goapi pins the modules whose tests run.sh runs: the official Go client
// (github.com/hashicorp/consul/api) and the harness its tests use
// (github.com/hashicorp/consul/sdk/testutil). Nothing here is built; the build tag keeps
// `go mod tidy` from dropping the requirements.
package goapi

import (
	_ "github.com/hashicorp/consul/api"
	_ "github.com/hashicorp/consul/sdk/testutil"
)
