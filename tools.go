//go:build tools

package tools
import (
 _ "github.com/hashicorp/go-plugin"
 _ "github.com/BurntSushi/toml"
 _ "google.golang.org/grpc"
 _ "github.com/jackc/pgx/v5/pgxpool"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "github.com/prometheus/common/expfmt"
 _ "github.com/hashicorp/go-hclog"
 _ "google.golang.org/protobuf/proto"
 _ "github.com/schollz/progressbar/v3"
)
