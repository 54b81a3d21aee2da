# Windows: register a scheduled task that runs `davsync pull` at log-on and every N minutes.
# Run in PowerShell (as the user whose folder it fills):
#   powershell -ExecutionPolicy Bypass -File davsync-pull-task.ps1 -Url http://raspberrypi.local:8080/ -User me -Dest D:\sync_root
#
# The password goes into Windows Credential Manager through `davsync login` (never into the
# task, a file or the environment). The task runs `davsyncw.exe`, the windowless entry point,
# so no console window flashes; its output goes to a log file. It also runs on battery.
param(
    [Parameter(Mandatory = $true)][string]$Url,
    [Parameter(Mandatory = $true)][string]$User,
    [string]$Dest = "$env:USERPROFILE\PiMirror",
    [int]$EveryMinutes = 15,
    [string]$Scripts = "",
    [string]$LogFile = "$env:LOCALAPPDATA\davsync\pull.log",
    [switch]$Delete
)
$ErrorActionPreference = "Stop"

# Find davsync.exe and davsyncw.exe: -Scripts, else next to the davsync on PATH (pip, pipx).
if (-not $Scripts) {
    $found = Get-Command davsync.exe -ErrorAction SilentlyContinue
    if (-not $found) {
        throw "davsync.exe is not on PATH. Install it (py -m pip install davsync, or pipx install davsync) or pass -Scripts <folder with davsync.exe>."
    }
    $Scripts = Split-Path $found.Source
}
$davsync = Join-Path $Scripts "davsync.exe"
$davsyncw = Join-Path $Scripts "davsyncw.exe"
if (-not (Test-Path $davsyncw)) { throw "$davsyncw is missing; reinstall davsync (it provides davsyncw.exe)." }

# Older versions of this script kept the password in the user environment: remove it.
if ([Environment]::GetEnvironmentVariable("DAVSYNC_PASSWORD", "User")) {
    [Environment]::SetEnvironmentVariable("DAVSYNC_PASSWORD", $null, "User")
    Write-Host "Removed DAVSYNC_PASSWORD from your user environment (the credential store holds it now)."
}

# Asks for the password (hidden), checks it with the server, stores it in Credential Manager.
& $davsync login $Url --user $User
if ($LASTEXITCODE -ne 0) { throw "davsync login failed (exit $LASTEXITCODE); nothing was registered." }

$arguments = "pull `"$Url`" `"$Dest`" --user `"$User`" --quiet --log-file `"$LogFile`""
if ($Delete) { $arguments += " --delete" }
$action = New-ScheduledTaskAction -Execute $davsyncw -Argument $arguments
$atLogon = New-ScheduledTaskTrigger -AtLogOn -User $env:USERNAME
$repeat = New-ScheduledTaskTrigger -Once -At (Get-Date).AddMinutes(1) `
    -RepetitionInterval (New-TimeSpan -Minutes $EveryMinutes)
$settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries `
    -MultipleInstances IgnoreNew -ExecutionTimeLimit (New-TimeSpan -Hours 12)
# Interactive: runs while you are logged on, with access to your Credential Manager entries.
$principal = New-ScheduledTaskPrincipal -UserId $env:USERNAME -LogonType Interactive
Register-ScheduledTask -TaskName "davsync pull" -Action $action -Trigger @($atLogon, $repeat) `
    -Settings $settings -Principal $principal -Description "Mirror $Url into $Dest" -Force | Out-Null
Write-Host "Registered task 'davsync pull': at log-on and every $EveryMinutes minutes into $Dest."
Write-Host "Log: $LogFile   Run it now: Start-ScheduledTask -TaskName 'davsync pull'"
