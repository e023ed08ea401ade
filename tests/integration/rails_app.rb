# The seed's Rails side of the job log, on Debian's ActiveRecord: its migrations, its models
# (enum, associations, validations, default scope) and its sample data. DB is a SQLite file,
# or a postgresql:// URL (the pg adapter).
#
#   ruby rails_app.rb migrate DB   create the tables with the seed's migrations
#   ruby rails_app.rb seed DB      insert the seed's sample logs and details
#   ruby rails_app.rb dump DB      print every log with its details as JSON, read through the models
#   ruby rails_app.rb append DB NAME MESSAGE   add a detail and finish the log, as Rails code would
require "active_record"
require "json"

command, database, *rest = ARGV
ActiveRecord::Base.default_timezone = :utc
if database.start_with?("postgresql://")
  ActiveRecord::Base.establish_connection(database)
else
  ActiveRecord::Base.establish_connection(adapter: "sqlite3", database: database)
end
ActiveRecord::Migration.verbose = false

class CreateJobLogs < ActiveRecord::Migration[6.1]
  def change
    create_table :job_logs do |t|
      t.string :name, null: false, index: { unique: true }
      t.integer :status, null: false, default: 0
      t.timestamps
    end

    add_index :job_logs, :status
    add_index :job_logs, :created_at
  end
end

class CreateJobLogDetails < ActiveRecord::Migration[6.1]
  def change
    create_table :job_log_details do |t|
      t.references :job_log, null: false, foreign_key: true, index: true
      t.text :message, null: false
      t.timestamps
    end

    add_index :job_log_details, :created_at
  end
end

class JobLog < ActiveRecord::Base
  enum status: { pending: 0, processing: 1, error: 2, success: 3 }
  has_many :job_log_details, dependent: :destroy
  validates :name, presence: true, uniqueness: true, format: { with: /\A\d{14}(_\d+)?\z/ }
  validates :status, presence: true

  def add_detail(message)
    job_log_details.create!(message: message)
  end
end

class JobLogDetail < ActiveRecord::Base
  belongs_to :job_log
  default_scope { order(created_at: :asc) }
  validates :message, presence: true, length: { maximum: 5000 }
end

def at(text) = Time.parse("#{text} UTC")

case command
when "migrate"
  CreateJobLogs.migrate(:up)
  CreateJobLogDetails.migrate(:up)
when "seed"
  JobLog.create!(name: "20251215143022", status: :success,
                 created_at: at("2025-12-15 14:30:22"), updated_at: at("2025-12-15 14:30:45"))
  JobLog.create!(name: "20251215144022", status: :error,
                 created_at: at("2025-12-15 14:40:22"), updated_at: at("2025-12-15 14:40:35"))
  JobLog.create!(name: "20251215145022", status: :processing,
                 created_at: at("2025-12-15 14:50:22"), updated_at: at("2025-12-15 14:50:25"))
  JobLog.create!(name: "20251215143022_1", status: :success,
                 created_at: at("2025-12-15 14:30:22"), updated_at: at("2025-12-15 14:30:50"))
  JobLog.find_by!(name: "20251215143022").job_log_details.create!([
    { message: "Job started - SyncOpenOrdersJob", created_at: at("2025-12-15 14:30:22") },
    { message: "Connecting to SQL Server CASQL2.inxintl.com...", created_at: at("2025-12-15 14:30:23") },
    { message: "Connected successfully", created_at: at("2025-12-15 14:30:24.5") },
  ])
when "dump"
  logs = JobLog.order(:id).map do |log|
    {
      name: log.name,
      status: log.status,
      created_at: log.created_at.utc.iso8601(6),
      updated_at: log.updated_at.utc.iso8601(6),
      valid: log.valid?,
      details: log.job_log_details.map do |detail|
        { message: detail.message, created_at: detail.created_at.utc.iso8601(6),
          valid: detail.valid? }
      end,
    }
  end
  puts JSON.generate(logs)
when "append"
  name, message = rest
  log = JobLog.find_by!(name: name)
  log.add_detail(message)
  log.success!
else
  abort "unknown command #{command}"
end
