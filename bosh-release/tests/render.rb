#!/usr/bin/env ruby
# Renders the cf-firehose-exporter job as a BOSH Director would, with the
# stand-in of bosh_template.rb:
#
#   ruby render.rb INPUT.json OUTPUT_DIR
#
# INPUT.json: {"properties": {...}, "links": {"name": {"address": ..., "properties": {...}}},
# "spec": {...}}. Each template lands at its destination under OUTPUT_DIR
# (config/bpm.yml, config/rlp_tls_ca.pem, ...). A template that fails prints
# its error and exits 1.

require "fileutils"
require "json"
require_relative "bosh_template"

input = JSON.parse(File.read(ARGV.fetch(0)))
out = ARGV.fetch(1)
job = BoshTemplate::Job.new(File.expand_path("../jobs/cf-firehose-exporter", __dir__))
links = (input["links"] || {}).to_h do |name, link|
  [name, BoshTemplate::Link.new(address: link.fetch("address"), properties: link["properties"] || {})]
end
begin
  files, = job.render(properties: input["properties"] || {}, links: links, spec: input["spec"] || {})
rescue StandardError => e
  warn "rendering failed: #{e.message}"
  exit 1
end
files.each do |path, text|
  target = File.join(out, path)
  FileUtils.mkdir_p(File.dirname(target))
  File.write(target, text)
end
