# Windows: register a scheduled task that runs `davsync pull` at log-on and every N minutes.
# Run in PowerShell (as the user whose folder it fills):
#   powershell -ExecutionPolicy Bypass -File davsync-pull-task.ps1 -Url http://raspberrypi.local:8080/ -User me
param(
    [Parameter(Mandatory = $true)][string]$Url,
    [Parameter(Mandatory = $true)][string]$User,
    [string]$Dest = "$env:USERPROFILE\PiMirror",
    [int]$EveryMinutes = 15,
    [string]$Davsync = "$env:USERPROFILE\davsync-venv\Scripts\davsync.exe"
)

# The password is kept by Windows' credential-protected user environment, not in the task.
$secure = Read-Host -AsSecureString "Password for $User on $Url"
$plain = [Runtime.InteropServices.Marshal]::PtrToStringAuto([Runtime.InteropServices.Marshal]::SecureStringToBSTR($secure))
[Environment]::SetEnvironmentVariable("DAVSYNC_PASSWORD", $plain, "User")

$action = New-ScheduledTaskAction -Execute $Davsync -Argument "pull `"$Url`" `"$Dest`" --user `"$User`" --quiet"
$atLogon = New-ScheduledTaskTrigger -AtLogOn -User $env:USERNAME
$repeat = New-ScheduledTaskTrigger -Once -At (Get-Date).AddMinutes(1) `
    -RepetitionInterval (New-TimeSpan -Minutes $EveryMinutes)
$settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -DontStopIfGoingOnBatteries -MultipleInstances IgnoreNew
Register-ScheduledTask -TaskName "davsync pull" -Action $action -Trigger @($atLogon, $repeat) `
    -Settings $settings -Description "Mirror $Url into $Dest" -Force
Write-Host "Registered task 'davsync pull': at log-on and every $EveryMinutes minutes into $Dest."
