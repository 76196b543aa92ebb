# A small stand-in for the bosh-template gem, with Ruby's standard ERB: what a
# BOSH Director gives a job's templates when it renders them.
#
# - Properties are the manifest's, with the spec's defaults for what the
#   manifest leaves out; a property the spec does not declare is not visible.
# - p(name) returns the value or raises when it is unset and has no default;
#   p(name, default) returns the default instead; p([a, b]) the first set.
# - if_p(*names) { |*values| } runs the block when every name is set, and
#   returns an object whose else { } runs otherwise.
# - link(name), if_link(name) { |link| } with link.address, link.p, link.if_p
#   and link.instances; spec.index, spec.id, spec.address, spec.name, ...
#
# Every property name a template asks for is recorded, declared or not, so
# that tests can check the templates read only what the spec declares.

require "erb"
require "ostruct"
require "set"
require "yaml"

module BoshTemplate
  class UnknownProperty < StandardError; end
  class UnknownLink < StandardError; end

  # Looks dotted names up in nested hashes.
  def self.dig(hash, name)
    name.split(".").reduce(hash) do |node, key|
      return nil unless node.is_a?(Hash) && node.key?(key)
      node[key]
    end
  end

  # The dotted names of the leaves of a nested hash.
  def self.leaves(hash, prefix = nil)
    hash.flat_map do |key, value|
      name = prefix ? "#{prefix}.#{key}" : key.to_s
      value.is_a?(Hash) && !value.empty? ? leaves(value, name) : [name]
    end
  end

  # The else { } of if_p and if_link.
  class Else
    def initialize(active)
      @active = active
    end

    def else
      yield if @active
      nil
    end
  end

  # A consumed link: the providing job's address and properties.
  class Link
    attr_reader :address, :instances

    def initialize(address:, properties: {}, instances: nil)
      @address = address
      @properties = properties
      @instances = instances || [OpenStruct.new(address: address, index: 0)]
    end

    def p(name, *default)
      value = BoshTemplate.dig(@properties, name)
      return value unless value.nil?
      return default.first unless default.empty?
      raise UnknownProperty, "Can't find link property '#{name}'"
    end

    def if_p(*names)
      values = names.map { |name| BoshTemplate.dig(@properties, name) }
      return Else.new(true) if values.any?(&:nil?)
      yield(*values)
      Else.new(false)
    end
  end

  # What a template's ERB sees.
  class Context
    attr_reader :read

    def initialize(job, properties, links, spec)
      @job = job
      @properties = properties
      @links = links
      @spec = OpenStruct.new({
        "name" => job.name, "index" => 0, "id" => "b8e0c6d2-0000-4000-8000-000000000000",
        "address" => "10.0.16.5", "ip" => "10.0.16.5", "az" => "z1",
        "deployment" => "prometheus", "bootstrap" => true,
      }.merge(spec))
      @read = Set.new
    end

    def spec
      @spec
    end

    def p(*args)
      names = Array(args[0])
      names.each do |name|
        value = lookup(name)
        return value unless value.nil?
      end
      return args[1] if args.length == 2
      raise UnknownProperty, "Can't find property '#{names.join("', '")}'"
    end

    def if_p(*names)
      values = names.map { |name| lookup(name) }
      return Else.new(true) if values.any?(&:nil?)
      yield(*values)
      Else.new(false)
    end

    def link(name)
      raise UnknownLink, "Can't find link '#{name}'" unless @links.key?(name)
      @links[name]
    end

    def if_link(name)
      return Else.new(true) unless @links.key?(name)
      yield @links[name]
      Else.new(false)
    end

    def render(text)
      ERB.new(text, trim_mode: "-").result(binding)
    end

    private

    def lookup(name)
      @read << name
      declared = @job.properties[name]
      return nil if declared.nil?
      value = BoshTemplate.dig(@properties, name)
      value.nil? ? declared["default"] : value
    end
  end

  # A job of the release: its spec and templates.
  class Job
    attr_reader :dir, :name, :properties, :templates, :spec

    def initialize(dir)
      @dir = dir
      @spec = YAML.safe_load(File.read(File.join(dir, "spec")))
      @name = @spec.fetch("name")
      @properties = (@spec["properties"] || {}).transform_values { |v| v || {} }
      @templates = @spec.fetch("templates")
    end

    # Renders every template with `properties` (the manifest's job
    # properties), `links` (name => Link) and `spec` overrides. Returns the
    # rendered files by their path under the job's directory, and the names
    # of the properties the templates read.
    def render(properties: {}, links: {}, spec: {})
      context = Context.new(self, properties, links, spec)
      files = @templates.to_h do |source, destination|
        text = File.read(File.join(@dir, "templates", source))
        [destination, context.render(text)]
      end
      [files, context.read]
    end
  end
end
