# The job's templates rendered as a Director would render them (with the
# stand-in of bosh_template.rb): ruby bosh-release/tests/template_test.rb

require "minitest/autorun"
require "yaml"
require_relative "bosh_template"

RELEASE = File.expand_path("..", __dir__)
JOB = BoshTemplate::Job.new(File.join(RELEASE, "jobs", "cf-firehose-exporter"))
CONFIG = "/var/vcap/jobs/cf-firehose-exporter/config"
FIXTURES = File.join(__dir__, "fixtures")

RLP_LINK = BoshTemplate::Link.new(
  address: "q-s0.reverse-log-proxy.default.cf.bosh",
  properties: { "reverse_log_proxy" => { "egress" => { "port" => 8082 } } },
)

# The fewest properties that read each transport.
MINIMAL = {
  "rlp" => { "firehose_exporter" => { "logging" => {
    "url" => "10.0.8.4:8082",
    "tls" => { "ca" => "CA PEM", "cert" => "CERT PEM", "key" => "KEY PEM" },
  } } },
  "gateway" => { "firehose_exporter" => {
    "logging" => { "url" => "https://log-stream.sys.example.com" },
    "uaa" => { "url" => "https://uaa.sys.example.com", "client_id" => "firehose_exporter", "client_secret" => "s3cr3t-uaa" },
  } },
  "firehose" => { "firehose_exporter" => {
    "doppler" => { "url" => "wss://doppler.sys.example.com:443" },
    "uaa" => { "url" => "https://uaa.sys.example.com", "client_id" => "firehose_exporter", "client_secret" => "s3cr3t-uaa" },
  } },
}.freeze

def deep_merge(a, b)
  a.merge(b) { |_, x, y| x.is_a?(Hash) && y.is_a?(Hash) ? deep_merge(x, y) : y }
end

def render(properties, links: {}, spec: {})
  JOB.render(properties: properties, links: links, spec: spec)
end

def bpm(properties, **options)
  files, = render(properties, **options)
  YAML.safe_load(files.fetch("config/bpm.yml"))
end

def env_of(properties, **options)
  bpm(properties, **options).fetch("processes").fetch(0).fetch("env")
end

class TemplateTest < Minitest::Test
  def test_every_template_renders_with_only_the_required_properties
    MINIMAL.each do |source, properties|
      files, = render(properties)
      assert_equal JOB.templates.values.sort, files.keys.sort, source
      env = env_of(properties)
      assert_equal source, env["FIREHOSE_EXPORTER_SOURCE"], source
    end
    # The RLP through the reverse_log_proxy link: its certificates alone.
    certificates = { "firehose_exporter" => { "logging" => { "tls" => MINIMAL["rlp"]["firehose_exporter"]["logging"]["tls"] } } }
    files, = render(certificates, links: { "reverse_log_proxy" => RLP_LINK })
    assert_equal JOB.templates.values.sort, files.keys.sort
  end

  def test_the_rendered_bpm_config_parses_and_keeps_secrets_out_of_the_arguments
    properties = deep_merge(MINIMAL["firehose"], { "firehose_exporter" => {
      "web" => { "auth_username" => "prometheus", "auth_password" => "s3cr3t-web" },
    } })
    config = bpm(properties)
    process = config.fetch("processes").fetch(0)
    assert_equal "cf-firehose-exporter", process.fetch("name")
    assert_equal "/var/vcap/packages/cf-firehose-exporter/bin/cf-firehose-exporter", process.fetch("executable")
    assert_equal [], process.fetch("args")
    assert_equal({ "open_files" => 65536, "memory" => "2G" }, process.fetch("limits"))
    env = process.fetch("env")
    assert_equal "wss://doppler.sys.example.com:443", env["FIREHOSE_EXPORTER_DOPPLER_URL"]
    assert_equal "#{CONFIG}/uaa_client_secret", env["FIREHOSE_EXPORTER_UAA_CLIENT_SECRET_FILE"]
    refute env.values.include?("s3cr3t-uaa"), "the UAA secret is in a file, not the environment"
    assert_equal "s3cr3t-web", env["FIREHOSE_EXPORTER_WEB_AUTH_PASSWORD"]
    refute process.fetch("args").join(" ").include?("s3cr3t")
    files, = render(properties)
    assert_equal "s3cr3t-uaa", files.fetch("config/uaa_client_secret").strip
    assert_equal "", files.fetch("config/web_tls_cert.pem").strip
  end

  def test_tls_is_on_with_cert_and_key_and_one_alone_fails_clearly
    tls = { "firehose_exporter" => { "web" => { "tls_cert" => "WEB CERT", "tls_key" => "WEB KEY" } } }
    files, = render(deep_merge(MINIMAL["rlp"], tls))
    env = YAML.safe_load(files.fetch("config/bpm.yml"))["processes"][0]["env"]
    assert_equal "#{CONFIG}/web_tls_cert.pem", env["FIREHOSE_EXPORTER_WEB_TLS_CERT_FILE"]
    assert_equal "#{CONFIG}/web_tls_key.pem", env["FIREHOSE_EXPORTER_WEB_TLS_KEY_FILE"]
    assert_equal "WEB CERT", files.fetch("config/web_tls_cert.pem").strip
    assert_equal "WEB KEY", files.fetch("config/web_tls_key.pem").strip
    refute env_of(MINIMAL["rlp"]).key?("FIREHOSE_EXPORTER_WEB_TLS_CERT_FILE")
    %w[tls_cert tls_key].each do |only|
      alone = { "firehose_exporter" => { "web" => { only => "PEM" } } }
      error = assert_raises(RuntimeError) { render(deep_merge(MINIMAL["rlp"], alone)) }
      assert_equal "firehose_exporter.web.tls_cert and firehose_exporter.web.tls_key go together: set both or neither", error.message
    end
  end

  def test_a_missing_required_property_fails_naming_it
    {
      ["rlp", "logging", "tls", "cert"] => "firehose_exporter.logging.tls.cert and firehose_exporter.logging.tls.key go together",
      ["rlp", "logging", "tls", "ca"] => "firehose_exporter.logging.tls.ca is required to read the RLP",
      ["firehose", "uaa", "client_secret"] => "firehose_exporter.uaa.client_secret is required for a token to read the v1 Firehose",
      ["gateway", "uaa", "url"] => "firehose_exporter.uaa.url is required for a token to read the RLP gateway",
      ["firehose", "doppler", "url"] => "no transport",
    }.each do |(source, *path), message|
      properties = Marshal.load(Marshal.dump(MINIMAL[source]))
      parent = path[0..-2].reduce(properties["firehose_exporter"]) { |node, key| node[key] }
      parent.delete(path.last)
      error = assert_raises(RuntimeError, path.join(".")) { render(properties) }
      assert error.message.start_with?(message), error.message
    end
    error = assert_raises(RuntimeError) { render({ "firehose_exporter" => { "source" => "websocket" } }) }
    assert_match(/source: "websocket" is not one of/, error.message)
  end

  def test_the_reverse_log_proxy_link_gives_the_address
    properties = { "firehose_exporter" => { "logging" => { "tls" => { "ca" => "CA", "cert" => "C", "key" => "K" } } } }
    env = env_of(properties, links: { "reverse_log_proxy" => RLP_LINK })
    assert_equal "q-s0.reverse-log-proxy.default.cf.bosh:8082", env["FIREHOSE_EXPORTER_LOGGING_URL"]
    assert_equal "rlp", env["FIREHOSE_EXPORTER_SOURCE"]
    refute env.key?("FIREHOSE_EXPORTER_UAA_URL")
  end

  def test_the_go_names_take_the_namespace_node_index_and_delta
    properties = deep_merge(MINIMAL["rlp"], { "firehose_exporter" => {
      "metrics" => { "naming" => "firehose_exporter", "namespace" => "cf" },
      "retro_compat" => { "enable_delta" => true },
    } })
    env = env_of(properties, spec: { "index" => 2 })
    assert_equal "firehose_exporter", env["FIREHOSE_EXPORTER_METRICS_NAMING"]
    assert_equal "cf", env["FIREHOSE_EXPORTER_METRICS_NAMESPACE"]
    assert_equal "2", env["FIREHOSE_EXPORTER_NODE_INDEX"]
    assert_equal "true", env["FIREHOSE_EXPORTER_RETRO_COMPAT_ENABLE_DELTA"]
    native = env_of(MINIMAL["rlp"])
    refute native.key?("FIREHOSE_EXPORTER_METRICS_NAMESPACE")
    refute native.key?("FIREHOSE_EXPORTER_NODE_INDEX")
  end

  def test_remote_write_takes_its_endpoints_and_keeps_its_secrets_in_files
    assert_nil env_of(MINIMAL["rlp"])["FIREHOSE_EXPORTER_REMOTE_WRITE_URL"]
    properties = deep_merge(MINIMAL["rlp"], { "firehose_exporter" => {
      "remote_write" => {
        "urls" => ["https://mimir.example.com/api/v1/push", "http://vm:8428/api/v1/write"],
        "username" => "tenant-1", "password" => "s3cr3t-rw",
        "tls" => { "ca" => "RW CA", "cert" => "RW CERT", "key" => "RW KEY" },
        "external_labels" => { "region" => "eu", "foundation" => "prod" },
      },
      "web" => { "disable_exposition" => true },
    } })
    files, = render(properties, spec: { "name" => "exporters", "index" => 2 })
    process = YAML.safe_load(files.fetch("config/bpm.yml"))["processes"][0]
    env = process["env"]
    assert_equal "https://mimir.example.com/api/v1/push,http://vm:8428/api/v1/write", env["FIREHOSE_EXPORTER_REMOTE_WRITE_URL"]
    assert_equal "tenant-1", env["FIREHOSE_EXPORTER_REMOTE_WRITE_USERNAME"]
    assert_equal "#{CONFIG}/remote_write_password", env["FIREHOSE_EXPORTER_REMOTE_WRITE_PASSWORD_FILE"]
    assert_equal "s3cr3t-rw", files.fetch("config/remote_write_password").strip
    refute env.values.join(" ").include?("s3cr3t-rw"), "the password is in a file only"
    refute process["args"].join(" ").include?("s3cr3t-rw")
    assert_equal "#{CONFIG}/remote_write_ca.pem", env["FIREHOSE_EXPORTER_REMOTE_WRITE_TLS_CA_FILE"]
    assert_equal "RW CERT", files.fetch("config/remote_write_cert.pem").strip
    assert_equal "#{CONFIG}/remote_write_key.pem", env["FIREHOSE_EXPORTER_REMOTE_WRITE_TLS_KEY_FILE"]
    assert_equal "foundation=prod,region=eu", env["FIREHOSE_EXPORTER_REMOTE_WRITE_EXTERNAL_LABELS"]
    assert_equal "exporters/2", env["FIREHOSE_EXPORTER_REMOTE_WRITE_SHARD"], "each instance its own shard, stable across restarts"
    assert_equal "true", env["FIREHOSE_EXPORTER_WEB_DISABLE_EXPOSITION"]
    refute env.key?("FIREHOSE_EXPORTER_REMOTE_WRITE_BEARER_TOKEN_FILE")
    bearer = deep_merge(MINIMAL["rlp"], { "firehose_exporter" => { "remote_write" => {
      "urls" => ["https://receive:19291/api/v1/receive"], "bearer_token" => "s3cr3t-token", "shard" => "blue",
    } } })
    files, = render(bearer)
    env = YAML.safe_load(files.fetch("config/bpm.yml"))["processes"][0]["env"]
    assert_equal "#{CONFIG}/remote_write_bearer_token", env["FIREHOSE_EXPORTER_REMOTE_WRITE_BEARER_TOKEN_FILE"]
    assert_equal "s3cr3t-token", files.fetch("config/remote_write_bearer_token").strip
    assert_equal "blue", env["FIREHOSE_EXPORTER_REMOTE_WRITE_SHARD"]
    refute env.key?("FIREHOSE_EXPORTER_REMOTE_WRITE_USERNAME")
  end

  def test_remote_write_mistakes_fail_rendering_with_one_line_naming_them
    {
      { "web" => { "disable_exposition" => true } } => "firehose_exporter.web.disable_exposition needs firehose_exporter.remote_write.urls",
      { "remote_write" => { "urls" => ["http://a/w"], "username" => "u" } } => "firehose_exporter.remote_write.username and firehose_exporter.remote_write.password go together",
      { "remote_write" => { "urls" => ["http://a/w"], "username" => "u", "password" => "p", "bearer_token" => "t" } } => "firehose_exporter.remote_write.bearer_token and firehose_exporter.remote_write.username: set one of them",
      { "remote_write" => { "urls" => ["http://a/w"], "tls" => { "cert" => "C" } } } => "firehose_exporter.remote_write.tls.cert and firehose_exporter.remote_write.tls.key go together",
      { "remote_write" => { "urls" => ["http://a/w,http://b/w"] } } => "firehose_exporter.remote_write.urls: \"http://a/w,http://b/w\" has a comma",
    }.each do |more, message|
      error = assert_raises(RuntimeError, message) { render(deep_merge(MINIMAL["rlp"], { "firehose_exporter" => more })) }
      assert error.message.start_with?(message), error.message
      refute error.message.include?("\n"), error.message
    end
  end

  def test_every_property_read_is_declared_and_every_declared_one_is_read
    read = Set.new
    everything = deep_merge(MINIMAL["gateway"], { "firehose_exporter" => {
      "doppler" => { "ca" => "CA" }, "uaa" => { "ca" => "CA" },
      "web" => { "auth_username" => "u", "auth_password" => "p", "tls_cert" => "C", "tls_key" => "K" },
      "metrics" => { "naming" => "firehose_exporter" },
      "remote_write" => {
        "urls" => ["https://mimir/api/v1/push"], "username" => "u", "password" => "p",
        "tls" => { "ca" => "CA", "cert" => "C", "key" => "K", "insecure_skip_verify" => true },
        "external_labels" => { "foundation" => "prod" }, "shard" => "a",
        "interval" => "30s", "queue_capacity" => 5000,
      },
    }, "env" => { "http_proxy" => "http://proxy:3128", "https_proxy" => "http://proxy:3128", "no_proxy" => "localhost" } })
    link = { "reverse_log_proxy" => RLP_LINK }
    rlp_everything = deep_merge(MINIMAL["rlp"], everything.reject { |k, _| k == "firehose_exporter" })
    [
      [MINIMAL["rlp"], {}], [MINIMAL["rlp"], link], [MINIMAL["firehose"], {}],
      [everything, {}], [rlp_everything, link],
    ].each do |properties, links|
      _, names = render(properties, links: links)
      read.merge(names)
    end
    undeclared = read.to_a - JOB.properties.keys
    assert_empty undeclared, "read by a template but not in the spec"
    unread = JOB.properties.keys - read.to_a
    assert_empty unread, "declared in the spec but read by no template"
    readme = File.read(File.join(RELEASE, "README.md"))
    JOB.properties.each do |name, property|
      assert property["description"].to_s.strip != "", "#{name} has a description"
      assert property.key?("default") || property["description"].start_with?("Required"), "#{name} has a default or is marked required"
      assert readme.include?("| `#{name}` |"), "#{name} is in README.md's table"
    end
  end

  def test_the_manifests_and_ops_files_set_only_declared_properties
    files = Dir[File.join(RELEASE, "manifests", "**", "*.yml")]
    refute_empty files
    checked = 0
    files.each do |file|
      each_exporter_properties(YAML.safe_load(File.read(file)), file) do |prefix, value|
        names = value.is_a?(Hash) ? BoshTemplate.leaves(value, prefix) : [prefix]
        names.each do |name|
          assert JOB.properties.key?(name), "#{File.basename(file)} sets #{name}, which the spec does not declare"
          checked += 1
        end
      end
    end
    assert_operator checked, :>=, 10
  end

  def test_a_prometheus_boshrelease_properties_block_renders
    Dir[File.join(FIXTURES, "prometheus-boshrelease-*.yml")].sort.each do |file|
      job = YAML.safe_load(File.read(file))
      links = file.include?("v7") ? { "reverse_log_proxy" => RLP_LINK } : {}
      env = env_of(job.fetch("properties"), links: links)
      assert_equal "prod", env["FIREHOSE_EXPORTER_METRICS_ENVIRONMENT"], file
      assert env["FIREHOSE_EXPORTER_SOURCE"], file
    end
    v5 = env_of(YAML.safe_load(File.read(File.join(FIXTURES, "prometheus-boshrelease-v5.yml"))).fetch("properties"))
    assert_equal "firehose", v5["FIREHOSE_EXPORTER_SOURCE"]
    assert_equal "300", v5["FIREHOSE_EXPORTER_DOPPLER_MAX_RETRY_COUNT"]
    v7 = env_of(YAML.safe_load(File.read(File.join(FIXTURES, "prometheus-boshrelease-v7.yml"))).fetch("properties"),
                links: { "reverse_log_proxy" => RLP_LINK })
    assert_equal "rlp", v7["FIREHOSE_EXPORTER_SOURCE"]
    assert_equal "16384", v7["FIREHOSE_EXPORTER_TIMER_ROLLUP_BUFFER_SIZE"]
    assert_equal "firehose_exporter", v7["FIREHOSE_EXPORTER_SHARD_ID"]
  end

  # Yields (dotted name, value) for each property of a cf-firehose-exporter
  # job that a manifest or an ops file sets.
  def each_exporter_properties(doc, file, &block)
    case doc
    when Array # an ops file
      doc.each do |op|
        rest = op["path"].to_s[%r{/jobs/name=cf-firehose-exporter/properties/(.*)}, 1]
        if rest
          name = rest.split("/").map { |s| s.delete_suffix("?") }.join(".")
          if op["type"] == "remove"
            # Removes a property, or a group of them.
            assert JOB.properties.keys.any? { |p| p == name || p.start_with?("#{name}.") }, "#{File.basename(file)} removes #{name}, which the spec does not declare"
          else
            yield name, op["value"]
          end
        else
          walk_jobs(op["value"], &block)
        end
      end
    when Hash
      walk_jobs(doc, &block)
    else
      flunk "#{file} is neither a manifest nor an ops file"
    end
  end

  def walk_jobs(node, &block)
    case node
    when Hash
      if node["name"] == "cf-firehose-exporter" && node["properties"].is_a?(Hash)
        node["properties"].each { |key, value| yield key, value }
      end
      node.each_value { |value| walk_jobs(value, &block) }
    when Array
      node.each { |value| walk_jobs(value, &block) }
    end
  end
end
